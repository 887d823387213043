// The sharp peer of `python -m thumbcache.bench.endtoend` (benchmark only, never shipped).
//
// node sharp_peer.js MANIFEST.json  ->  prints one JSON line {seconds, images, versions}
//
// MANIFEST: {"out": dir, "concurrency": 2, "warmup": true,
//            "renditions": [{"name", "width", "height", "quality", "chroma", "optimize"}],
//            "tasks": [{"stem", "src"} | {"stem", "zip", "entry"}]}
// Every task renders each rendition from the source bytes (sharp's shrink-on-load, EXIF
// orientation applied), fit inside the box, never enlarged, JPEG with the given settings,
// written to OUT/STEM_NAME.jpg. `concurrency` tasks are in flight at once and libvips runs
// one thread per operation (sharp.concurrency(1)), so "concurrency 2" uses two cores.
// CBZ pages are read with a minimal ZIP reader below (stored or deflated entries).
"use strict";

const fs = require("fs");
const path = require("path");
const zlib = require("zlib");
const sharp = require("sharp");

sharp.cache(false);
sharp.concurrency(1);

const archives = new Map();

function openZip(file) {
  let zip = archives.get(file);
  if (zip) return zip;
  const buf = fs.readFileSync(file);
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error(`${file}: no end of central directory`);
  const count = buf.readUInt16LE(eocd + 10);
  let pos = buf.readUInt32LE(eocd + 16);
  const entries = new Map();
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(pos) !== 0x02014b50) throw new Error(`${file}: bad central record`);
    const method = buf.readUInt16LE(pos + 10);
    const size = buf.readUInt32LE(pos + 20);
    const nameLen = buf.readUInt16LE(pos + 28);
    const extraLen = buf.readUInt16LE(pos + 30);
    const commentLen = buf.readUInt16LE(pos + 32);
    const local = buf.readUInt32LE(pos + 42);
    const name = buf.toString("utf8", pos + 46, pos + 46 + nameLen);
    entries.set(name, { method, size, local });
    pos += 46 + nameLen + extraLen + commentLen;
  }
  zip = { buf, entries };
  archives.set(file, zip);
  return zip;
}

function readEntry(file, name) {
  const zip = openZip(file);
  const e = zip.entries.get(name);
  if (!e) throw new Error(`${file}: no entry ${name}`);
  const start = e.local + 30 + zip.buf.readUInt16LE(e.local + 26) + zip.buf.readUInt16LE(e.local + 28);
  const raw = zip.buf.subarray(start, start + e.size);
  if (e.method === 0) return raw;
  if (e.method === 8) return zlib.inflateRawSync(raw);
  throw new Error(`${file}: ${name}: compression method ${e.method}`);
}

async function renderTask(task, renditions, out, suffix) {
  const input = task.zip ? readEntry(task.zip, task.entry) : await fs.promises.readFile(task.src);
  for (const r of renditions) {
    await sharp(input)
      .rotate()
      .resize(r.width, r.height, { fit: "inside", withoutEnlargement: true })
      .jpeg({
        quality: r.quality,
        chromaSubsampling: r.chroma,
        optimiseCoding: r.optimize,
        mozjpeg: false,
      })
      .toFile(path.join(out, `${task.stem}${suffix}_${r.name}.jpg`));
  }
}

async function main() {
  const manifest = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const { out, renditions, tasks } = manifest;
  const concurrency = manifest.concurrency || 2;
  fs.mkdirSync(out, { recursive: true });
  if (manifest.warmup && tasks.length) {
    await renderTask(tasks[0], renditions, out, "_warmup");
  }
  const started = process.hrtime.bigint();
  let next = 0;
  async function lane() {
    while (next < tasks.length) {
      const task = tasks[next++];
      await renderTask(task, renditions, out, "");
    }
  }
  await Promise.all(Array.from({ length: concurrency }, lane));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write(
    JSON.stringify({ seconds, images: tasks.length, versions: sharp.versions }) + "\n",
  );
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});

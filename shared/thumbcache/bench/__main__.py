"""Entry point of ``python -m thumbcache.bench``."""

from thumbcache.bench.run import main

if __name__ == "__main__":
    raise SystemExit(main())

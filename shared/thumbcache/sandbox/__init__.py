"""Rendering in child processes: a wall-clock limit that really stops the work, a memory
ceiling per render, and a decoder crash that fails one image instead of killing its worker.

Not a security sandbox (no syscall filter): it bounds time, memory and crashes.
"""

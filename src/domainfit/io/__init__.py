"""The bottom layer's file access: crash-safe writes, paths kept inside a run folder, pickle-free state files."""

"""One runnable script per section of the source material; compare/ imports their ports."""

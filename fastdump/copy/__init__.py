"""The copy: cycles of pfns judged, windows of pages copied on N threads, progress."""

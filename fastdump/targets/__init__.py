"""Where dumps go: target strings, the sinks that write them, and raw devices checked first."""

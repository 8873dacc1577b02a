"""One module per dump format, each with its writer and its reader."""

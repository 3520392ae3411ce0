"""Page scripts of the demo; each is a few lines that call a shared page builder."""

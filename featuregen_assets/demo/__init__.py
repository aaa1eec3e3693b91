"""The offline demo: synthetic scenes with known truth, a loopback HTTP server and the demo run.

Production code never imports this package."""

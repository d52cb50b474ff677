"""Reports of a run: terminal tables (rich); the HTML report arrives later."""

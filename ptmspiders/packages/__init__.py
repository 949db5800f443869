"""Model packages: download, verify, store and scan the repositories themselves."""

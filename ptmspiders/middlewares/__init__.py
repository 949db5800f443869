"""Downloader middlewares: authentication scoped to each hub's own host."""

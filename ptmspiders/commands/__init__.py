"""Project commands of ``scrapy`` (``COMMANDS_MODULE``): ``crawl`` with honest exit codes."""

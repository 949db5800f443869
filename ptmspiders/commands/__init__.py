"""Project commands of ``scrapy`` (``COMMANDS_MODULE``): ``crawl`` that checks ``-a`` first and
exits with honest codes."""

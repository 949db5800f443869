"""A local mock of the model hubs, speaking each hub's real wire format on 127.0.0.1.

``MockHub`` is one HTTP server with per-hub route modules (``huggingface.py``, ...). Tests bind it
to port 0; ``python -m tests.mockhub`` runs it for the demo.
"""

from tests.mockhub.server import MockHub, MockRequest, MockResponse

__all__ = ["MockHub", "MockRequest", "MockResponse"]

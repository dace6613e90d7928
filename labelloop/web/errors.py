"""Errors of the web workforce."""

from __future__ import annotations

from labelloop.errors import LabelloopError


class WebRequestError(LabelloopError):
    """A request that the web app rejects, with the HTTP status code to send.

    Parameters
    ----------
    status_code : int
        HTTP status of the response, 4xx.
    detail : str
        What was wrong with the request and how to fix it; sent to the client.
    """

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class WorkforceError(LabelloopError):
    """An invalid worker name, or a worker that cannot log in on the web."""

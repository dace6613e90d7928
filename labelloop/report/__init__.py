"""Job reports: the data (JSON) and a self-contained HTML page with plots."""

from labelloop.report.data import build_report
from labelloop.report.html import write_html_report

__all__ = ["build_report", "write_html_report"]

"""An example iii-state adapter: copy this folder to start your own (see docs/writing-an-adapter.md)."""

from .adapter import TemplateAdapter

__all__ = ["TemplateAdapter"]

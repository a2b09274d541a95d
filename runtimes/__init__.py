"""Swappable runtime backends behind one interface; see base.Runtime and registry."""

from kit.runtimes.base import Availability, Runtime
from kit.runtimes.registry import ENTRY_POINT_GROUP, create, get, known, load

__all__ = ["ENTRY_POINT_GROUP", "Availability", "Runtime", "create", "get", "known", "load"]

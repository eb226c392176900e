"""rudder-server's transformer protocol: processor and router fronts (docs/mapping.md §11, §12)."""

from .lookup import ProfileLookup, klaviyo_lookup
from .processor import process
from .router import route

__all__ = ["ProfileLookup", "klaviyo_lookup", "process", "route"]

"""The only part that talks to Klaviyo: the pool, sessions, retries, limits and outcomes."""

from .client import KlaviyoClient
from .headers import klaviyo_headers
from .metrics import DeliveryMetrics
from .outcomes import Outcome, SentRequest
from .session import KlaviyoSession

__all__ = [
    "DeliveryMetrics",
    "KlaviyoClient",
    "KlaviyoSession",
    "Outcome",
    "SentRequest",
    "klaviyo_headers",
]

"""TokModel access: the client, its error tree and its result types.

The fake server (`bot.tokmodel.fake`) is deliberately not imported here: production code never
needs it.
"""

from bot.tokmodel.client import TokModelClient
from bot.tokmodel.errors import (
    BadRequest,
    ConnectionFailed,
    ImageRejected,
    InsufficientCredits,
    MalformedResponse,
    NotFound,
    RateLimited,
    ServerError,
    StreamBroken,
    Timeout,
    TokModelError,
    Unauthorized,
)
from bot.tokmodel.types import (
    ChatDelta,
    ChatMessage,
    ChatResult,
    GeneratedImage,
    ModelInfo,
    RerankResult,
    Usage,
)

__all__ = [
    "BadRequest",
    "ChatDelta",
    "ChatMessage",
    "ChatResult",
    "ConnectionFailed",
    "GeneratedImage",
    "ImageRejected",
    "InsufficientCredits",
    "MalformedResponse",
    "ModelInfo",
    "NotFound",
    "RateLimited",
    "RerankResult",
    "ServerError",
    "StreamBroken",
    "Timeout",
    "TokModelClient",
    "TokModelError",
    "Unauthorized",
    "Usage",
]

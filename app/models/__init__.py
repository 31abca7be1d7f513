"""All tables, imported here so Alembic and `Base.metadata` see every one."""

from app.models.base import Base
from app.models.channels import Channel, Thread
from app.models.delivery import Delivery, DeliveryAttempt, Destination, IdempotencyKey
from app.models.files import StoredFile
from app.models.integrations import BoxToken, Integration
from app.models.messages import InboundEvent, Message
from app.models.security import ApiKey
from app.models.suppressions import Suppression

__all__ = [
    "ApiKey",
    "Base",
    "BoxToken",
    "Channel",
    "Delivery",
    "DeliveryAttempt",
    "Destination",
    "IdempotencyKey",
    "InboundEvent",
    "Integration",
    "Message",
    "StoredFile",
    "Suppression",
    "Thread",
]

"""Portal views, one module per page area."""

from collections.abc import Callable
from typing import Any, TypeVar

from django.http import Http404

from docplatform.errors import NotFound

T = TypeVar("T")


def found_or_404(getter: Callable[..., T], **kwargs: Any) -> T:
    """What a selector returns, its NotFound (absent, or another user's) as the portal's 404."""
    try:
        return getter(**kwargs)
    except NotFound as exc:
        raise Http404(exc.message) from None

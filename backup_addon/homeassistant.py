"""Home Assistant's REST API, reached through the Supervisor's proxy at ``/core/api``.

One method per request. Every failure becomes a HomeAssistantError whose text tells the user
what happened; the token only ever travels in the Authorization header.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from yarl import URL

from .errors import AddonError

DEFAULT_TIMEOUT = 10.0
# Home Assistant's own error texts are short; anything longer is not worth showing.
MAX_DETAIL = 200


class HomeAssistantError(AddonError):
    """Home Assistant refused a request or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _segment(value: str) -> str:
    # Entity ids and event types become one path segment, whatever characters they hold.
    return quote(value, safe="")


async def _detail(response: aiohttp.ClientResponse) -> str:
    try:
        text = await response.text()
    except (aiohttp.ClientError, UnicodeDecodeError, TimeoutError):
        return ""
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"]
    text = " ".join(text.split())
    return text[:MAX_DETAIL]


def _status_message(status: int, action: str, detail: str) -> str:
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        return (
            f"Home Assistant refused the add-on's access while {action} ({status}). The add-on needs "
            "access to the Home Assistant API; restart it, and reinstall it if that does not help."
        )
    if status in (HTTPStatus.BAD_GATEWAY, HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.GATEWAY_TIMEOUT):
        return (
            f"Home Assistant is not available while {action} ({status}); it may be starting or "
            "restarting. The add-on tries again shortly."
        )
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return f"Home Assistant failed while {action} ({status}): {detail or 'see the Home Assistant log'}"
    return f"Home Assistant refused {action} ({status}): {detail or 'no reason given'}"


class HomeAssistant:
    """Talks to Home Assistant Core as the add-on, through the Supervisor's proxy."""

    def __init__(
        self,
        supervisor_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._base = supervisor_url.rstrip("/") + "/core/api"
        self._headers = {"Authorization": f"Bearer {token}"}
        self.timeout = timeout
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def _request(
        self, method: str, path: str, action: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """Send one request; return (status, parsed JSON) for 2xx and 404, raise otherwise."""
        url = URL(f"{self._base}/{path}", encoded=True)
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().request(method, url, json=body, headers=self._headers) as response:
                    if response.status == HTTPStatus.NOT_FOUND or response.ok:
                        try:
                            data = await response.json(content_type=None)
                        except (json.JSONDecodeError, UnicodeDecodeError):
                            data = None
                        return response.status, data
                    detail = await _detail(response)
                    raise HomeAssistantError(
                        _status_message(response.status, action, detail), status=response.status
                    )
        except TimeoutError as err:
            raise HomeAssistantError(
                f"Home Assistant did not answer within {self.timeout:g} s while {action}; it may be busy "
                "or restarting. The add-on tries again shortly."
            ) from err
        except aiohttp.ClientError as err:
            # The exception text can name internal addresses; the user needs only what happened.
            raise HomeAssistantError(
                f"Cannot reach Home Assistant through the Supervisor while {action}; it may be restarting. "
                "The add-on tries again shortly."
            ) from err

    def _not_found(self, status: int, action: str, data: Any) -> None:
        if status == HTTPStatus.NOT_FOUND:
            detail = data.get("message") if isinstance(data, dict) else None
            raise HomeAssistantError(
                _status_message(status, action, str(detail or "not found")), status=status
            )

    async def notify(self, notification_id: str, title: str, message: str) -> None:
        """Show (or replace) the persistent notification ``notification_id``."""
        action = f"showing the notification '{notification_id}'"
        status, data = await self._request(
            "POST",
            "services/persistent_notification/create",
            action,
            {"notification_id": notification_id, "title": title, "message": message},
        )
        self._not_found(status, action, data)

    async def dismiss(self, notification_id: str) -> None:
        """Remove the persistent notification ``notification_id`` (no error if it is not shown)."""
        action = f"dismissing the notification '{notification_id}'"
        status, data = await self._request(
            "POST", "services/persistent_notification/dismiss", action, {"notification_id": notification_id}
        )
        self._not_found(status, action, data)

    async def fire_event(self, event_type: str, data: dict[str, Any]) -> None:
        """Fire ``event_type`` with ``data`` on Home Assistant's event bus."""
        action = f"firing the event '{event_type}'"
        status, answer = await self._request("POST", f"events/{_segment(event_type)}", action, data)
        self._not_found(status, action, answer)

    async def set_state(self, entity_id: str, state: str, attributes: dict[str, Any]) -> bool:
        """Set the state of ``entity_id``; True when Home Assistant did not know the entity before."""
        action = f"updating '{entity_id}'"
        status, data = await self._request(
            "POST", f"states/{_segment(entity_id)}", action, {"state": state, "attributes": attributes}
        )
        self._not_found(status, action, data)
        return status == HTTPStatus.CREATED

    async def get_state(self, entity_id: str) -> dict[str, Any] | None:
        """The state object of ``entity_id``, or None when Home Assistant does not know it."""
        status, data = await self._request("GET", f"states/{_segment(entity_id)}", f"reading '{entity_id}'")
        if status == HTTPStatus.NOT_FOUND:
            return None
        if not isinstance(data, dict):
            raise HomeAssistantError(f"Home Assistant sent an unreadable answer for '{entity_id}'.")
        return data

    async def entity_ids(self) -> list[str]:
        """The ids of every entity Home Assistant shows now."""
        action = "listing Home Assistant's entities"
        status, data = await self._request("GET", "states", action)
        self._not_found(status, action, data)
        if not isinstance(data, list):
            raise HomeAssistantError("Home Assistant sent an unreadable list of entities.")
        return [str(item["entity_id"]) for item in data if isinstance(item, dict) and "entity_id" in item]

    async def remove_state(self, entity_id: str) -> None:
        """Remove ``entity_id`` (one the add-on posted); a missing entity is no error."""
        await self._request("DELETE", f"states/{_segment(entity_id)}", f"removing '{entity_id}'")

    async def config(self) -> dict[str, Any]:
        """Home Assistant's configuration: ``time_zone``, ``version``, ``location_name``, units ..."""
        action = "reading Home Assistant's configuration"
        status, data = await self._request("GET", "config", action)
        self._not_found(status, action, data)
        if not isinstance(data, dict):
            raise HomeAssistantError("Home Assistant sent an unreadable answer for its configuration.")
        return data

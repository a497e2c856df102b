"""Drain on a signal: tell keep-alive clients to leave before the server stops.

Facts
-----
- Deployments stop a process with SIGTERM (Kubernetes, Docker, systemd, ECS), then
  SIGKILL after a deadline (Kubernetes ``terminationGracePeriodSeconds``, 30 s by
  default; ``docker stop``, 10 s).
- Each server installs its own SIGTERM handler and shuts down gracefully from it:
  uvicorn (``signal.signal`` in ``Server.capture_signals``, before it imports the
  application when started from its command line, after when the application object
  is built first and handed to ``uvicorn.run``); gunicorn workers
  (``signal.signal`` in ``Worker.init_signals``, before the application is loaded);
  hypercorn with ``--workers 0`` and granian workers (``loop.add_signal_handler``
  on the event loop, after the application is imported). A graceful shutdown closes
  idle keep-alive connections without a word: a client that sends its next request
  on such a connection at that moment gets a reset or an empty reply.
- On a loop-level handler (``loop.add_signal_handler``) the C signal handler wakes
  the loop through its wakeup fd whatever Python handler is installed, so such a
  handler can only be chained on the loop itself. The standard asyncio loop keeps
  them in ``loop._signal_handlers``; uvloop exposes no way to read them.
- Python runs signal handlers in the main thread only, and only the main thread may
  call ``signal.signal``. Handlers are inherited across ``fork()``.
- ``gunicorn --preload`` loads the application in the master, which then installs
  its own handlers; each forked worker resets them all and installs its own in
  ``Worker.init_signals``, without loading the application again. So connmw, told
  of every fork (``os.register_at_fork``), installs again in a forked gunicorn
  worker right after ``init_signals`` (see :mod:`connmw.servers.gunicorn`).
- hypercorn with worker processes never signals them (see
  :mod:`connmw.servers.hypercorn`): there :func:`drain_on_signal` refuses to start,
  naming the fix, rather than do nothing.

So :func:`drain_on_signal` puts its own handler in front of whatever is current: on
the signal it starts draining (every HTTP/1.x response from then on says
``Connection: close``), keeps serving for ``grace`` seconds so keep-alive clients
hear it and reconnect elsewhere, then hands the signal to the handler it replaced,
in the main thread, so the server's own graceful shutdown runs as usual. A second
signal during the grace period hands over at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from types import FrameType
from typing import Any, Protocol, TypeAlias, cast

__all__ = ["SignalDrain", "drain_on_signal"]

logger = logging.getLogger("connmw")

_Handler: TypeAlias = "Callable[[int, FrameType | None], Any] | int | signal.Handlers | None"


class Drainable(Protocol):
    def drain(self, window: float = ...) -> None: ...


class SignalDrain:
    """What :func:`drain_on_signal` returns: the installed hook and its state.

    :ivar fired: the signal arrived and draining has started.
    :ivar handed_over: the signal was handed to the previous handler.
    """

    def __init__(
        self,
        targets: tuple[Drainable, ...],
        *,
        grace: float,
        window: float,
        signals: tuple[int, ...],
    ) -> None:
        self.targets = targets
        self.grace = grace
        self.window = window
        self.signals = signals
        self.fired = False
        self.handed_over = False
        self._lock = threading.Lock()
        self._previous: dict[int, _Handler] = {}
        self._loop_previous: dict[int, asyncio.Handle] = {}
        self._release: set[int] = set()
        self._timer: threading.Timer | asyncio.TimerHandle | None = None
        self._main = cast(int, threading.main_thread().ident)
        self._warned = False
        self._wanted = True

    # -- installation ------------------------------------------------------------

    def install(self) -> bool:
        """Put the handler in front of whatever handles the signals now.

        Idempotent; call it again after a server installed its own handlers (the
        ASGI middleware does it at lifespan startup and on the first request). Returns
        True when every signal is routed through connmw; False when it cannot be
        (not in the main thread, or an event loop whose handlers cannot be chained).
        """
        self._wanted = True
        if threading.current_thread() is not threading.main_thread():
            return False
        ok = True
        loop = _running_loop()
        for sig in self.signals:
            if loop is not None and self._chain_loop(loop, sig):
                continue
            current = signal.getsignal(sig)
            if current == self._on_signal:
                continue
            if _is_loop_noop(current):
                ok = False
                self._warn(sig, current)
                continue
            signal.signal(sig, self._on_signal)
            self._previous[sig] = current
        return ok

    def _chain_loop(self, loop: asyncio.AbstractEventLoop, sig: int) -> bool:
        handlers = getattr(loop, "_signal_handlers", None)
        if not isinstance(handlers, dict):
            return False
        handle = handlers.get(sig)
        if not isinstance(handle, asyncio.Handle):
            return False
        if getattr(handle, "_callback", None) == self._on_loop_signal:
            return True
        self._loop_previous[sig] = handle
        loop.add_signal_handler(sig, self._on_loop_signal, sig)
        return True

    def _warn(self, sig: int, current: object) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "connmw.drain_on_signal: %s is handled by an event loop whose handlers cannot be "
                "chained (%r); the signal will stop the server without draining first",
                signal.Signals(sig).name,
                current,
            )

    def reinstall(self) -> None:
        """:meth:`install` again unless :meth:`uninstall` was called since (what the
        ASGI middleware calls at lifespan startup and on its first request)."""
        if self._wanted:
            self.install()

    def uninstall(self) -> None:
        """Put the replaced handlers back (main thread only); the ASGI middleware no
        longer re-installs them."""
        self._wanted = False
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._previous.clear()
        loop = _running_loop()
        if loop is not None:
            for sig, handle in self._loop_previous.items():
                loop.add_signal_handler(sig, handle._run)
        self._loop_previous.clear()
        self.cancel()

    def cancel(self) -> None:
        """Stop a pending hand-over (the grace timer)."""
        timer = self._timer
        self._timer = None
        if timer is not None:
            timer.cancel()

    # -- the signal ----------------------------------------------------------------

    def _start(self) -> bool:
        """Start draining; False when it had already started."""
        with self._lock:
            if self.fired:
                return False
            self.fired = True
        for target in self.targets:
            try:
                target.drain(self.window)
            except Exception:
                logger.exception("connmw.drain_on_signal: drain() of %r raised", target)
        logger.warning(
            "connmw: signal received; draining for %.3g s before the server shuts down", self.grace
        )
        return True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum in self._release or not self._start():
            self._release.discard(signum)
            self.cancel()
            self._hand_over(signum, frame)
            return
        if self.grace <= 0:
            self._hand_over(signum, frame)
            return
        timer = threading.Timer(self.grace, self._resend, (signum,))
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _resend(self, signum: int) -> None:
        # Runs in the timer thread: deliver the signal again to the main thread, where
        # _on_signal hands it over with the semantics the previous handler expects.
        self._timer = None
        self._release.add(signum)
        signal.pthread_kill(self._main, signum)

    def _hand_over(self, signum: int, frame: FrameType | None) -> None:
        self.handed_over = True
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # SIG_DFL, or a handler not installed from Python
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def _on_loop_signal(self, signum: int) -> None:
        if not self._start():
            self.cancel()
            self._loop_hand_over(signum)
            return
        if self.grace <= 0:
            self._loop_hand_over(signum)
            return
        self._timer = asyncio.get_running_loop().call_later(self.grace, self._loop_hand_over, signum)

    def _loop_hand_over(self, signum: int) -> None:
        self._timer = None
        self.handed_over = True
        self._loop_previous[signum]._run()

    # -- lazy installation from the ASGI middleware ---------------------------------

    def wrap_asgi(self, owner: Any) -> None:
        """Make ``owner.app`` call :meth:`install` at lifespan startup and on the
        first request; after that request the original app is put back."""
        owner.app = _Installer(owner, owner.app, self)


_ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


class _Installer:
    __slots__ = ("app", "done", "hook", "owner")

    def __init__(self, owner: Any, app: _ASGIApp, hook: SignalDrain) -> None:
        self.owner = owner
        self.app = app
        self.hook = hook
        self.done = False

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if not self.done:
            if scope.get("type") == "lifespan":
                hook = self.hook

                async def receive_hook() -> MutableMapping[str, Any]:
                    message = await receive()
                    if message.get("type") == "lifespan.startup":
                        hook.reinstall()
                    return message

                await self.app(scope, receive_hook, send)
                return
            self.done = True
            self.hook.reinstall()
            if self.owner.app is self:
                self.owner.app = self.app
        await self.app(scope, receive, send)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _is_loop_noop(handler: object) -> bool:
    """True for the placeholder an event loop installs with ``add_signal_handler``."""
    name = getattr(handler, "__qualname__", "") or ""
    return name == "_sighandler_noop" or name.endswith("__sighandler")


def drain_on_signal(
    middleware: Any,
    *,
    grace: float = 5.0,
    window: float = 0.0,
    signals: Iterable[int] = (signal.SIGTERM,),
) -> SignalDrain:
    """On SIGTERM, drain, keep serving for ``grace`` seconds, then let the server stop.

    :param middleware: a :class:`~connmw.ConnectionMiddleware` or
        :class:`~connmw.WSGIConnectionMiddleware` (or several, or anything with a
        ``drain(window)`` method), or an application connmw was installed on with
        ``connmw.contrib.starlette.install(app)`` or ``connmw.contrib.flask.install(app)``.
    :param grace: seconds to keep serving after the signal, so that every keep-alive
        client sends one more request, hears ``Connection: close`` and reconnects
        elsewhere. Keep it below the server's own shutdown deadline (gunicorn
        ``--graceful-timeout``) and the orchestrator's (Kubernetes
        ``terminationGracePeriodSeconds``), leaving room for requests in flight.
    :param window: the drain ramp (see ``drain(window)``): the close probability rises
        from 0 to 1 over these seconds. 0 (default) closes every response at once.
    :param signals: the signals to intercept; SIGTERM by default. SIGINT (Ctrl-C) is
        left alone unless you add it.
    :returns: a :class:`SignalDrain` (``fired``, ``handed_over``, ``install()``,
        ``uninstall()``).

    Call it where the application is built (module level), in the main thread. It
    installs its handler at once, in front of the current one. An ASGI middleware
    also re-checks at lifespan startup and on its first request, since servers
    such as uvicorn (when handed an application object) or hypercorn and granian (on
    their event loop) install their handlers after the application is imported.
    After ``grace`` seconds (or at once on a second signal) the signal goes to the
    handler connmw replaced: the server's graceful shutdown, or the default action.

    Usage::

        app = ConnectionMiddleware(app)
        connmw.drain_on_signal(app, grace=10)
    """
    given: tuple[Any, ...]
    if isinstance(middleware, Iterable) and not hasattr(middleware, "drain"):
        given = tuple(middleware)
    else:
        given = (middleware,)
    targets = tuple(_drainable(target) for target in given)
    if not targets:
        raise ValueError("drain_on_signal needs at least one middleware")
    for name, value in (("grace", grace), ("window", window)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise ValueError(f"drain_on_signal {name} must be a number of seconds >= 0, got {value!r}")
    sigs = tuple(int(s) for s in signals)
    if not sigs:
        raise ValueError("drain_on_signal needs at least one signal")
    from .servers.hypercorn import stopped_without_signal

    if stopped_without_signal():
        raise RuntimeError(
            "connmw.drain_on_signal: hypercorn with worker processes (--workers 1 or more, the "
            "default) stops its workers through a shared event, never a signal, so nothing would "
            "drain. Run hypercorn --workers 0 (one process; add processes with your process "
            "manager), or call drain() on the middleware yourself (e.g. from a preStop hook) "
            "instead of drain_on_signal."
        )
    hook = SignalDrain(targets, grace=float(grace), window=float(window), signals=sigs)
    hook.install()
    if not _hooks:
        os.register_at_fork(after_in_child=_after_fork_in_child)
    _hooks.append(hook)
    for target in targets:
        if _is_asgi(target):
            hook.wrap_asgi(target)
    return hook


#: Every hook made in this process (the caller often keeps none), for forked workers.
_hooks: list[SignalDrain] = []


def _after_fork_in_child() -> None:
    from .servers.gunicorn import after_worker_signals

    hooks = [hook for hook in _hooks if hook._wanted]
    if hooks:
        after_worker_signals(lambda: _reinstall_all(hooks))


def _reinstall_all(hooks: list[SignalDrain]) -> None:
    for hook in hooks:
        hook.reinstall()


def _drainable(target: Any) -> Drainable:
    """The middleware to drain for ``target``: itself, or the one installed on an app."""
    if callable(getattr(target, "drain", None)):
        return cast(Drainable, target)
    from .contrib.starlette import installed

    found: Any = installed(target)
    extensions = getattr(target, "extensions", None)  # Flask's install() keeps it there
    if found is None and isinstance(extensions, dict):
        found = extensions.get("connmw")
    if callable(getattr(found, "drain", None)):
        return cast(Drainable, found)
    hint = ""
    if callable(getattr(target, "build_middleware_stack", None)):
        hint = (
            " A ConnectionMiddleware given to add_middleware() exists only once the application "
            "runs, inside Starlette's error middleware: use connmw.contrib.starlette.install(app) "
            "instead, then drain_on_signal(app)."
        )
    raise TypeError(
        "drain_on_signal needs a middleware with drain() or an application connmw was installed "
        f"on (connmw.contrib.starlette.install(app), connmw.contrib.flask.install(app)), got {target!r}."
        + hint
    )


def _is_asgi(target: object) -> bool:
    from .asgi import ConnectionMiddleware

    return isinstance(target, ConnectionMiddleware)

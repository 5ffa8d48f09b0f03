"""The Content-Security-Policy every answer of the server carries: the MLflow UI runs under
it (checked in Chromium, tests/test_browser.py), and a script that got into a page (an
artifact, a run name) can neither run inline nor reach or load anything from another site.

- Scripts, workers, fonts, fetches and frames: this origin only. The UI's bundle has no
  inline script and calls no other site; its workers come from its own files or blob: URLs.
- Styles: also inline, which the UI's CSS-in-JS and its charts insert at run time
  (a policy without 'unsafe-inline' there blocks them on every page).
- Frames: also blob:, the UI's preview of an HTML artifact (a sandboxed frame). The frame
  inherits this policy, so an HTML artifact shows, but its own scripts do not run.
- Images: also data: and blob: (charts exported, artifact previews). Media: also MLflow's
  site, where the UI's empty traces page takes its tutorial video from. Nothing else of
  another site: the trace view's catalog of custom views (JSON from mlflow.org, which may
  name scripts) stays blocked.
- No plugins (object-src), no <base> elsewhere, forms post only here, and pages are framed
  only by this origin (as MLflow's X-Frame-Options SAMEORIGIN says). The notebook trace
  renderer, which Jupyter frames from its own origin, is left without frame-ancestors,
  as MLflow leaves it without X-Frame-Options.
"""

from __future__ import annotations

_SOURCES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: blob:",
    "font-src": "'self' data:",
    "media-src": "'self' https://mlflow.org",
    "connect-src": "'self'",
    "worker-src": "'self' blob:",
    "frame-src": "'self' blob:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
}
CONTENT_SECURITY_POLICY = "; ".join(f"{name} {sources}" for name, sources in _SOURCES.items())
FRAMED_BY_THIS_ORIGIN = "frame-ancestors 'self'"


class ContentSecurityPolicy:
    """ASGI middleware: the policy on every HTTP answer."""

    def __init__(self, app):
        from mlflow.tracing.constant import TRACE_RENDERER_ASSET_PATH

        self.app = app
        self.framed_elsewhere = TRACE_RENDERER_ASSET_PATH
        self.policy = f"{CONTENT_SECURITY_POLICY}; {FRAMED_BY_THIS_ORIGIN}".encode()
        self.renderer_policy = CONTENT_SECURITY_POLICY.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = self.renderer_policy if scope.get("path", "").startswith(self.framed_elsewhere) else self.policy

        async def send_with_policy(message):
            if message["type"] == "http.response.start":
                # Added, not replacing: a policy MLflow may send one day applies as well.
                message["headers"] = [*message.get("headers", []), (b"content-security-policy", policy)]
            await send(message)

        await self.app(scope, receive, send_with_policy)

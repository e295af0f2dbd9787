"""Two resource endpoints behind DOT access tokens. A tenant is an OAuth Application (its
`name` is the app id): a token is only good for its own application's /api/<app>/..."""

from django.contrib.auth import get_user_model
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from oauth2_provider.oauth2_backends import get_oauthlib_core


def _verified(request, app, scopes):
    """(access token, None) when DOT accepts the bearer token for `scopes` and `app`, else
    (None, the error response): DOT's own RFC 6750 error (invalid_token for unknown,
    revoked or expired tokens, insufficient_scope), or wrong_tenant."""
    valid, r = get_oauthlib_core().verify_request(request, scopes=scopes)
    if not valid:
        err = dict(getattr(r, "oauth2_error", None) or {"error": "invalid_token"})
        status = 403 if err.get("error") == "insufficient_scope" else 401
        return None, JsonResponse(err, status=status)
    token = r.access_token
    if token.application.name != app:
        return None, JsonResponse(
            {"error": "wrong_tenant", "error_description": "token of another application"},
            status=403,
        )
    return token, None


@csrf_exempt
@require_GET
def me(request, app):
    token, err = _verified(request, app, ["read"])
    if err:
        return err
    return JsonResponse({"username": token.user.username, "app": app})


@csrf_exempt
@require_POST
def deactivate(request, app, username):
    """The admin action: a staff user's token with scope `admin` deactivates a user."""
    token, err = _verified(request, app, ["admin"])
    if err:
        return err
    if not token.user.is_staff:
        return JsonResponse({"error": "not_staff"}, status=403)
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        return JsonResponse({"error": "no_such_user"}, status=404)
    user.is_active = False
    user.save(update_fields=["is_active"])
    return JsonResponse({"deactivated": username, "by": token.user.username})

"""The fixture's own code: the tenant claim, short-lived access tokens for chosen users, and one
staff-only admin action."""
import os
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer
from rest_framework_simplejwt.tokens import RefreshToken

# Users (comma-separated usernames) whose login hands out access tokens that expire after
# DRF_SHORT_LIVED_SECONDS: so a test can present a real, expired token the trail saw issued.
SHORT_LIVED = {u for u in os.environ.get("DRF_SHORT_LIVED", "").split(",") if u}
SHORT_LIFETIME = timedelta(seconds=int(os.environ.get("DRF_SHORT_LIVED_SECONDS", "1")))


def tenant_of(user):
    """A user's tenant: the first label of their e-mail domain (alice@acme.test → acme)."""
    domain = (user.email or "").rpartition("@")[2]
    return domain.split(".")[0] or "none"


class LoginRefreshToken(RefreshToken):
    """simplejwt's refresh token; its access token expires early for SHORT_LIVED users."""

    short_lived = False

    @property
    def access_token(self):
        access = super().access_token
        if self.short_lived:
            access.set_exp(from_time=self.current_time, lifetime=SHORT_LIFETIME)
        return access


class TenantTokenObtainPairSerializer(TokenObtainPairSerializer):
    """simplejwt's pair serializer with a `tenant` claim (copied into the access tokens that
    refreshes mint, since simplejwt copies the refresh token's claims)."""

    token_class = LoginRefreshToken

    @classmethod
    def get_token(cls, user):
        token = super().get_token(user)
        token["tenant"] = tenant_of(user)
        token.short_lived = user.username in SHORT_LIVED
        return token


class DeactivateUserView(APIView):
    """POST /api/admin/users/<id>/deactivate/ — staff only: deactivate a user of any tenant
    (the tenancy check is authtrail's requirement, in front)."""

    permission_classes = [IsAdminUser]

    def post(self, request, user_id):
        user = get_object_or_404(get_user_model(), pk=user_id)
        user.is_active = False
        user.save(update_fields=["is_active"])
        return Response(
            {
                "id": str(user.pk),
                "username": user.username,
                "is_active": user.is_active,
                # the tenant the request said it acts in, as Django received it
                "app_id": request.headers.get("X-App-Id"),
            }
        )

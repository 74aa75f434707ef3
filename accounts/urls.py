from django.urls import path

from accounts import apis

urlpatterns = [
    path("token/", apis.TokenObtainApi.as_view(), name="auth-token"),
    path("token/refresh/", apis.TokenRefreshApi.as_view(), name="auth-token-refresh"),
    path("logout/", apis.LogoutApi.as_view(), name="auth-logout"),
    path("me/", apis.MeApi.as_view(), name="auth-me"),
    path("keys/", apis.ApiKeyListCreateApi.as_view(), name="auth-keys"),
    path("keys/<int:key_id>/", apis.ApiKeyRevokeApi.as_view(), name="auth-key-revoke"),
    path("usage/", apis.UsageApi.as_view(), name="auth-usage"),
    path("organizations/", apis.OrganizationListCreateApi.as_view(), name="auth-organizations"),
    path(
        "organizations/<int:organization_id>/switch/",
        apis.OrganizationSwitchApi.as_view(),
        name="auth-organization-switch",
    ),
    path("members/", apis.MemberListCreateApi.as_view(), name="auth-members"),
    path("members/<int:user_id>/", apis.MemberDetailApi.as_view(), name="auth-member"),
]

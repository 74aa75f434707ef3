from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.apis import ReviewPingApi
from docplatform import views
from docplatform.metrics.views import metrics

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/auth/", include("accounts.urls")),
    path("api/review/ping", ReviewPingApi.as_view(), name="review-ping"),
    path("api/", include("vision.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/conversations/", include("vision.conversations.urls")),
    path("v1/", include("vision.openai.urls")),
    path("", include("accounts.portal_urls")),
    path("", include("vision.portal.urls")),
    path("", include("vision.portal.share_urls")),
]

handler404 = "docplatform.views.page_not_found"
handler500 = "docplatform.views.server_error"

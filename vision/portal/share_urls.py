"""Share-link routes (included at the site root by docplatform/urls.py): the public pages a link
opens, without an account, and the job page's share and revoke forms."""

from django.urls import path

from vision.portal.views import sharing

urlpatterns = [
    path("share/<str:token>/", sharing.shared_document, name="share-page"),
    path("share/<str:token>/pages/<int:number>", sharing.shared_page_image, name="share-page-image"),
    path("jobs/<int:job_id>/share/", sharing.share_create, name="portal-share-create"),
    path("share-links/<int:link_id>/revoke/", sharing.share_revoke, name="portal-share-revoke"),
]

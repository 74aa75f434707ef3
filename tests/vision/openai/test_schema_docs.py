"""The OpenAPI schema lists /v1 and the conversation API; the Swagger page works offline."""

import pytest

pytestmark = pytest.mark.django_db


def test_schema_documents_v1_and_conversations(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/v1/chat/completions" in paths and "/v1/models" in paths
    chat = paths["/v1/chat/completions"]["post"]
    assert "messages" in chat["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"/api/conversations/", "/api/conversations/{conversation_id}"} <= set(paths)


def test_swagger_docs_page_uses_local_assets(client):
    """No CDN: the page references the sidecar's static files, which are served."""
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html and "cdn.jsdelivr" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200

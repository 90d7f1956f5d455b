"""The interactive API docs render in a real browser from this server alone (offline)."""

from urllib.parse import urlsplit


def test_the_api_docs_render_every_operation_without_leaving_the_server(page, live_server):
    here = urlsplit(live_server).netloc
    elsewhere: list[str] = []

    def only_here(route):
        """Let requests to this server through; record and refuse any other."""
        if urlsplit(route.request.url).netloc == here:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.goto("/api/docs/")
    page.wait_for_selector(".opblock-summary")
    operations = page.locator(".opblock-summary-path").all_inner_texts()
    served = page.request.get("/api/v1/openapi.json").json()["paths"]
    methods = {"get", "post", "put", "patch", "delete"}
    documented = sum(len(methods & set(ops)) for ops in served.values())
    assert documented >= 27 and len(operations) == documented, operations
    paths = [op.replace("\u200b", "") for op in operations]
    assert "/projects/{slug}/items" in paths and "/projects/{slug}/settings" in paths
    assert page.locator(".title").first.inner_text().startswith("Corrigo API")
    assert elsewhere == [] and failed == []

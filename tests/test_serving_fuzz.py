"""Schema-driven fuzzing of the RAG service: schemathesis generates requests from the
app's own OpenAPI document (valid and invalid ones) and sends them in-process over
ASGI to the app on the demo lake; no request may end in a server error, and every
response must match the documented schema and status codes."""
import schemathesis
from hypothesis import HealthCheck, settings

from serving.app import create_app

TOKEN = "fuzz-token-0123456789"
app = create_app(tokens=f"fuzzer:{TOKEN}")
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_has_no_server_errors(case, demo):
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})

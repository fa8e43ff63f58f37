"""A real S3 API server for tests: moto's server mode, on loopback and a free port, in a
process of its own. In this process it would share the GIL with the code under test,
and delta-rs holds the GIL through some of its requests (`DeltaTable.history`): the
server could then never answer them."""
from __future__ import annotations

import logging
import multiprocessing


def _serve(conn) -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    conn.send(server.get_host_and_port())
    try:
        conn.recv()  # until told to stop, or the test process is gone (EOFError)
    except EOFError:
        pass
    server.stop()


class S3Server:
    """`with S3Server() as endpoint:` an http:// endpoint speaking the S3 API."""

    def __enter__(self) -> str:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(120):
            self.process.kill()
            raise RuntimeError("the S3 test server did not start within 120 s")
        host, port = self.conn.recv()
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        try:
            self.conn.send("stop")
        except OSError:
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


# What the tests and benches sign with (moto accepts any).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1"}


def create_bucket(endpoint: str, bucket: str) -> None:
    """Create `bucket` on the server at `endpoint` unless it is there (boto3, moto's own
    dependency: s3fs's mkdir sends a LocationConstraint that us-east-1 refuses)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=CREDENTIALS["AWS_REGION"],
                      aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)

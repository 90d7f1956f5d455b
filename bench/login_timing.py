"""Login timing: does a wrong password for an existing email cost what an unknown email costs?

Per backend: one user; then, interleaved so both share the machine's load, `POST /login` through
the Flask test client with (a) the existing email and a wrong password (the baseline), and
(b) an email nobody has. Each answers 400 "Wrong email or password."; the rate limit is raised
out of the way (it is what stops guessing; this measures what timing reveals). A ratio near
1.0x means the answer's timing does not tell which emails exist (main: 5 ms vs 108 ms).

    .venv/bin/python -m bench.login_timing [--db sqlite,postgresql] [--calls 60]
"""

from __future__ import annotations

import time

from bench.common import bench_app, header, load, median, ms, p95, parse_args, table
from tests.factories import make_user


def _attempt(client, email: str) -> float:
    """Time one failed login through the form (the CSRF token fetched untimed)."""
    with client.session_transaction() as sess:
        sess.setdefault("csrf", "bench-token")
        token = sess["csrf"]
    form = {"email": email, "password": "not-the-password", "csrf_token": token}
    start = time.perf_counter()
    response = client.post("/login", data=form)
    elapsed = time.perf_counter() - start
    assert response.status_code == 400, response.status_code
    return elapsed


def main() -> None:
    """Measure and print a table per backend."""
    args = parse_args(__doc__, calls=(60, "failed logins of each kind"))
    header("login timing: existing email + wrong password vs unknown email")
    rows = []
    for backend in args.db:
        with bench_app(backend, redis=True) as app:
            app.config["RATELIMIT_LOGIN"] = "1000000 per minute"
            make_user("someone@example.com", "right-password")
            client = app.test_client()
            known, unknown = [], []
            for i in range(args.calls + 3):
                a = _attempt(client, "someone@example.com")
                b = _attempt(client, f"nobody-{i}@example.com")
                if i >= 3:  # warm-up
                    known.append(a)
                    unknown.append(b)
            rows.append(
                [
                    backend,
                    f"{ms(median(known))} / {ms(p95(known))}",
                    f"{ms(median(unknown))} / {ms(p95(unknown))}",
                    f"{median(unknown) / median(known):.2f}x",
                ]
            )
    load()
    print(
        table(
            [
                "backend",
                "existing email, wrong password: median / p95",
                "unknown email: median / p95",
                "unknown / existing",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()

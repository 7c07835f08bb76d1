"""The diagnostics bundle hides every secret, in plain files and in archives within archives; its place."""

import io
import zipfile

from h2o_tasks import diagnostics


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def test_secrets_are_masked_everywhere_even_in_nested_archives(tmp_path):
    secret, key = b"wJalrXUtnFEMI/K7MDENG", b"AKIAEXAMPLE"
    node = _zip({"h2o_127.0.0.1_54321-3-info.log": b"PersistS3 key=" + key + b" secret=" + secret})
    (tmp_path / "h2o-logs.zip").write_bytes(_zip({"h2ologs/node0.zip": node, "readme.txt": secret}))
    (tmp_path / "status.json").write_bytes(b'{"error": "' + secret + b'"}')
    for path in tmp_path.iterdir():
        diagnostics._scrub_file(path, [secret, key])
    outer = zipfile.ZipFile(tmp_path / "h2o-logs.zip")
    inner = zipfile.ZipFile(io.BytesIO(outer.read("h2ologs/node0.zip")))
    text = inner.read("h2o_127.0.0.1_54321-3-info.log") + outer.read("readme.txt") + (tmp_path / "status.json").read_bytes()
    assert secret not in text and key not in text and text.count(diagnostics.MASK) == 4


def test_the_bundle_sits_beside_the_registry_and_names_the_run():
    uri = diagnostics.bundle_uri("s3://h2o-demo/models/arrival-delay", "arrival-delay", "h2o_train__arrival-delay",
                                 "scheduled__2013-02-04T00:00:00+00:00")
    assert uri.startswith("s3://h2o-demo/models/_diagnostics/arrival-delay/h2o_train__arrival-delay/"
                          "scheduled__2013-02-04T00_00_00_00_00/")

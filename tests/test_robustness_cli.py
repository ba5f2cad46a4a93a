"""The `churn` command on hostile inputs (docs/robustness.md): personal data under innocuous
column names, tampered models, failed registrations, and credentials or personal values in
messages.  Each runs the installed console script, as a user would, on a real MLflow store.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from servers import run_churn, store_client
from test_cli_table import FAST, churn_table

MODEL = "post-breach-churn"
TRAIN = ["train", "--data", "table.csv", "--id", "customer", "--target", "Churn", "--positive", "Yes",
         "--value", "monthly", "--config", "logistic.toml"]


def _one_error_line(result) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# --- personal data never reaches MLflow ----------------------------------------------------


def _planted(n: int) -> dict[str, list]:
    """Personal values under innocuous names: names, phones (text and int64), emails, identity numbers."""
    first = ["Olivia", "Liam", "Emma", "Noah", "Ava", "Mason", "Sophia", "Lucas", "Mia", "Ethan", "Grace", "Owen",
             "Chloe", "Jack", "Ella", "Henry", "Zoe", "Leo", "Ruby", "Isaac", "Nora", "Felix", "Iris", "Hugo", "Maya"]
    last = ["Brennan", "Okafor", "Lindqvist", "Moreau", "Takahashi", "Kowalski", "Haddad", "Fitzgerald", "Novak",
            "Castillo", "Whitfield", "Abernathy", "Quintero", "Nakamura", "Schmidt", "Rossi", "Delacroix", "Dubois",
            "Petrov", "Ashworth", "Vasquez", "Holloway", "Gallagher", "Sorensen", "Marchetti"]
    surnames = list("김이박최정강조윤장임한오서신권황안송류홍")
    given = ["민준", "서연", "도윤", "지우", "하준", "서윤", "시우", "지민", "주원", "하은", "예준", "수아", "지호",
             "지유", "준서", "채원", "유준", "윤서", "건우", "다은", "현우", "소율", "우진", "예린", "선우"]
    rng = np.random.default_rng(11)
    order = rng.permutation(n)
    return {
        "contact": [f"{first[i % 25]} {last[i // 25 % 25]}" for i in order],
        "memo": [surnames[i % 20] + given[i // 20 % 25] for i in order],
        "col7": [1012000000 + int(i) * 7919 for i in order],  # int64 phones without the leading 0
        "col8": [f"010{2000 + int(i):04d}{7000 + int(i):04d}" for i in order],  # text phones, no separators
        "note": [f"010-{3000 + int(i):04d}-{4000 + int(i):04d}" for i in order],
        "ref": [f"{80 + int(i) % 20:02d}{1 + int(i) % 12:02d}{1 + int(i) % 28:02d}-{1 + int(i) % 4}{100000 + int(i) * 7:06d}"
                for i in order],
        "c9": [f"user.{int(i)}.planted@example.org" for i in order],
        "col10": [9001011000000 + int(i) * 104729 for i in order],  # 13-digit identity numbers as int64
    }


def _forms(value) -> set[bytes]:
    """The ways a planted value could be written: as is, JSON-escaped, as a number, in scientific notation."""
    text = str(value)
    forms = {text, json.dumps(text)[1:-1]}
    if text.isdigit():  # digits read back as a number lose a leading 0; floats may be 1.0120079e+09
        number = str(int(text))
        significant = number.rstrip("0") or "0"
        mantissa = f"{significant[0]}.{significant[1:]}"
        forms.add(number)
        # a mantissa of few digits ("1.012" for 1012000000) also occurs by chance (a parameter "1.0" stored beside
        # a run id "120160d0..." in mlflow.db): search it only with its exponent
        short = len(significant) < 7
        forms |= {f"{mantissa}e+{len(number) - 1:02d}", f"{int(number):e}"} if short else {mantissa}
    return {form.encode("utf-8").lower() for form in forms}


def _found(planted: dict[str, list], blobs: dict[str, bytes]) -> list[str]:
    """Every (planted value, place) where a form of the value occurs (blobs are lower-cased bytes)."""
    from collections import defaultdict

    labels = {form: f"{column}={value!r}" for column, values in planted.items() for value in values
              for form in _forms(value)}
    by_prefix = defaultdict(list)
    for form in labels:
        by_prefix[form[:4]].append(form)
    hits = []
    for where, blob in blobs.items():
        for prefix, group in by_prefix.items():
            start = blob.find(prefix)
            while start != -1:
                hits += [f"{labels[form]} in {where}" for form in group if blob.startswith(form, start)]
                start = blob.find(prefix, start + 1)
    return hits


@pytest.mark.slow
def test_planted_personal_data_never_reaches_the_store_the_list_the_report_or_the_terminal(tmp_path):
    n = 800
    planted = _planted(n)
    table = churn_table(n).drop(columns=["customer_name"]).assign(**planted)
    table.to_csv(tmp_path / "table.csv", index=False)
    table.drop(columns=["Churn"]).to_csv(tmp_path / "unlabelled.csv", index=False)
    table.drop(columns=["Churn", *planted]).to_csv(tmp_path / "without.csv", index=False)
    (tmp_path / "logistic.toml").write_text(FAST.format(candidates='["logistic"]'))
    env = {"CHURN_PROGRESS": "1"}  # progress lines on stderr too

    trained = run_churn(TRAIN, tmp_path, env=env)
    out = tmp_path / "out"
    out.mkdir()
    scored = run_churn(["score", "--data", "unlabelled.csv", "--output", str(out / "all.csv"), "--all"], tmp_path,
                       env=env)
    assert "wrote 800 rows" in scored.stdout
    blobs = {"stdout": "\n".join([trained.stdout, scored.stdout]).encode().lower(),
             "stderr": "\n".join([trained.stderr, scored.stderr]).encode().lower()}
    files = [tmp_path / "mlflow.db", *sorted(p for p in (tmp_path / "mlruns").rglob("*") if p.is_file())]
    assert len(files) > 40
    written = sorted(p.name for p in out.iterdir())  # the list and what is written beside it
    assert written == ["all.csv", "all.dictionary.csv", "all.report.html", "all.summary.json"]
    files += [out / name for name in written]
    for path in files:
        blobs[str(path.relative_to(tmp_path))] = path.read_bytes().lower()
        if path.suffix in (".skops", ".zip"):  # compressed: look inside too
            with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
                for name in archive.namelist():
                    blobs[f"{path.name}:{name}"] = archive.read(name).lower()
    assert _found(planted, blobs) == []
    # the canary works: the same search finds planted values where they are
    assert _found(planted, {"table.csv": (tmp_path / "table.csv").read_bytes().lower()})
    client = store_client(tmp_path)
    version = client.get_model_version(MODEL, "1")
    import mlflow

    info = mlflow.models.Model.load(client.get_model_version_download_uri(MODEL, "1")[len("file://"):])
    inputs = [spec.name for spec in info.signature.inputs.inputs]
    assert inputs == info.metadata["input_columns"] == ["customer", "x", "tenure", "contract", "monthly"]
    assert set(info.metadata["profile"]) == {"x", "tenure", "contract", "monthly"}
    assert version.run_id

    for column, reason in [("contact", "personal data (person names)"), ("memo", "personal data (person names)"),
                           ("col7", "personal data (phone or identity numbers stored as numbers)"),
                           ("col8", "personal data (phone or identity numbers stored as numbers)"),  # read back as int64
                           ("note", "personal data (phone numbers)"),
                           ("ref", "personal data (identity numbers)"), ("c9", "personal data (email addresses)"),
                           ("col10", "personal data (phone or identity numbers stored as numbers)")]:
        assert f"{column} ({reason})" in trained.stdout
    # scoring does not demand the dropped columns
    assert "wrote 800 rows" in run_churn(["score", "--data", "without.csv", "--output", str(out / "without.csv"),
                                          "--all"], tmp_path).stdout


# --- tampered champion, failed registration -------------------------------------------------


def _change_one_number(path: Path) -> None:
    """Add 1 to one coefficient inside a skops file, keeping it a valid zip."""
    with zipfile.ZipFile(path) as old:
        members = [(info, old.read(info.filename)) for info in old.infolist()]
    buffer, done = io.BytesIO(), False
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as new:
        for info, data in members:
            if not done and info.filename.endswith(".npy"):
                array = np.load(io.BytesIO(data), allow_pickle=False)
                if array.dtype.kind == "f" and array.size:
                    array.flat[0] += 1.0
                    changed = io.BytesIO()
                    np.save(changed, array, allow_pickle=False)
                    data, done = changed.getvalue(), True
            new.writestr(info, data)
    assert done
    path.write_bytes(buffer.getvalue())


def _registry(client):
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))
    return versions, {k: int(v) for k, v in client.get_registered_model(MODEL).aliases.items()}


@pytest.mark.slow
def test_a_tampered_champion_is_never_scored_and_a_failed_training_registers_nothing(tmp_path):
    churn_table().to_csv(tmp_path / "table.csv", index=False)
    (tmp_path / "logistic.toml").write_text(FAST.format(candidates='["logistic"]'))
    run_churn(TRAIN, tmp_path)
    client = store_client(tmp_path)
    source = client.get_model_version_download_uri(MODEL, "1")
    _change_one_number(Path(source[len("file://"):]) / "model.skops")

    refused = run_churn(["score", "--data", "table.csv", "--output", "x.csv"], tmp_path, check=False)
    assert _one_error_line(refused) == (
        f"error: model models:/{MODEL}@champion failed its integrity check: file model.skops was changed after "
        "training (SHA-256 differs from the hash recorded at registration); refusing to load it")
    assert not (tmp_path / "x.csv").exists()

    before = _registry(client)
    failed = run_churn(TRAIN, tmp_path, check=False)
    line = _one_error_line(failed)
    assert line.startswith(f"error: nothing was registered: champion version 1 of {MODEL} could not be scored on "
                           f"this hold-out: model models:/{MODEL}/1 failed its integrity check: file model.skops")
    assert _registry(client) == before == ([1], {"champion": 1, "challenger": 1})
    runs = client.search_runs([client.get_experiment_by_name(MODEL).experiment_id], "tags.stage = 'train'",
                              order_by=["attributes.start_time DESC"])
    assert [run.info.status for run in runs] == ["FAILED", "FINISHED"]


# --- messages: no personal values, no passwords ---------------------------------------------


@pytest.fixture()
def workdir(tmp_path):
    table = churn_table(300).assign(email=[f"someone.{i}@example.org" for i in range(300)],
                                    contact=[f"010-{1000 + i}-{2000 + i}" for i in range(300)])
    table.to_csv(tmp_path / "table.csv", index=False)
    return tmp_path


# Slow: each case runs `churn` in a subprocess that loads the training stack or MLflow before it
# fails (seconds each); tests/test_bad_inputs.py keeps fast cases of one-line errors.
@pytest.mark.slow
@pytest.mark.parametrize("args, expected, secret", [
    (["train", "--data", "table.csv", "--target", "email"],
     "error: table.csv: column email: rows 0, 1, 2, 3, 4 (and 295 more) have values (300 distinct value(s), not shown: "
     "the column looks like personal data or an identifier) that are not 1/0", "@example.org"),
    (["train", "--data", "table.csv", "--target", "contact", "--positive", "yes"],
     "error: table.csv: column contact: no row has the positive label 'yes' (300 distinct value(s), not shown", "010-"),
    (["train", "--data", "table.csv", "--target", "Churn", "--tracking-uri", "http://user:s3cr3t@127.0.0.1:9"],
     "error: tracking server http://user:***@127.0.0.1:9 is unreachable (ConnectionError)", "s3cr3t"),
    (["score", "--data", "table.csv", "--output", "o.csv", "--tracking-uri", "https://me:s3cr3t@127.0.0.1:9/"],
     "error: tracking server https://me:***@127.0.0.1:9/ is unreachable", "s3cr3t"),
    (["train", "--data", "postgresql+psycopg://me:s3cr3t@127.0.0.1:9/db"],
     "error: postgresql+psycopg://me:***@127.0.0.1:9/db: cannot read the database", "s3cr3t"),
])
def test_messages_show_no_personal_values_and_no_passwords(workdir, args, expected, secret):
    result = run_churn(args, workdir, check=False, env={"CHURN_PROGRESS": "1"})
    assert result.returncode == 1
    assert expected in result.stderr.strip().splitlines()[-1], result.stderr
    assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize("text, shown", [
    ("http://user:secret@host:5000", "http://user:***@host:5000"),
    ("postgresql+psycopg://u:p@ss@db.internal:5432/base", "postgresql+psycopg://u:***@db.internal:5432/base"),
    ("API request to https://me:s%40cret@127.0.0.1/api/2.0/x failed", "API request to https://me:***@127.0.0.1/api/2.0/x failed"),
    ("mysql://u@h/d?password=secret&ssl=1", "mysql://u@h/d?password=***&ssl=1"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("/data/customers.csv", "/data/customers.csv"),
    ("someone@example.org is not a URL", "someone@example.org is not a URL"),
])
def test_hide_credentials_masks_every_password_in_a_message(text, shown):
    from pipeline.errors import hide_credentials

    assert hide_credentials(text) == shown

"""One upload path for model repositories and the Space: `create_repo(exist_ok=True)`, then a single
`create_commit` with one `CommitOperationAdd` per file of the assembled folder; `--dry-run` lists that same set and
contacts nobody. A failure on the Hub's side is a `PublishError` (one line, exit code 1).
"""

import sys
import tempfile
from pathlib import Path

from gpt2mini.checkpoint import UsageError
from gpt2mini.hub.folder import check_repo_id
from gpt2mini.hub.repo import assemble_model, repo_files
from gpt2mini.hub.space import assemble_space
from gpt2mini.paths import MODELS_DIR


class PublishError(Exception):
    """The Hub (or the network) refused or failed: reported as one line, exit code 1."""


def check_can_upload(token: str | None) -> None:
    """Fail early, before anything is sent: offline mode, or no token from --token, HF_TOKEN or `hf auth login`."""
    from huggingface_hub import constants, get_token

    if constants.is_offline_mode():
        raise UsageError("HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it, or use --dry-run")
    if not (token or get_token()):
        raise UsageError("not logged in to the Hugging Face Hub: run `hf auth login`, set HF_TOKEN or pass --token")


def upload(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str = "model",
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    message: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Create the repo if needed and send every file of `folder` (`repo_files`) in one commit. Returns its URL."""
    import httpx2  # huggingface_hub's HTTP client: its connection errors
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    folder = Path(folder)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(
            repo_id,
            repo_type=repo_type,
            private=True if private else None,  # None: public, unless the organisation's default is private
            exist_ok=True,
            space_sdk="gradio" if repo_type == "space" else None,
        )
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in repo_files(folder)]
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=message or f"Upload with publish.py ({len(operations)} files)",
            repo_type=repo_type,
            revision=revision,
        )
    except (HfHubHTTPError, OfflineModeIsEnabled, httpx2.HTTPError, OSError, ValueError, RuntimeError) as e:
        # RuntimeError: a failed LFS/Xet transfer; ValueError: metadata the Hub rejects, or a malformed answer
        text = str(e).strip().splitlines()
        raise PublishError(f"the upload to {repo_id} failed: {text[0] if text else type(e).__name__}") from None
    return info.commit_url


def publish_model(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    message: str | None = None,
    dry_run: bool = False,
    out: str | Path | None = None,
    endpoint: str | None = None,
    report=print,
    plain_gpt2: bool = False,
) -> str | None:
    """Assemble the model repository for `folder` and upload it (what `publish.py MODEL_DIR` and
    `train.py --push-to-hub` run); as plain GPT-2 with `plain_gpt2`. Returns the commit URL (None for a dry run)."""
    return _publish(
        lambda dest: assemble_model(folder, dest, repo_id, plain_gpt2),
        repo_id,
        "model",
        token=token,
        private=private,
        revision=revision,
        message=message or f"Upload GPT-2 mini from {Path(folder).name} with publish.py",
        dry_run=dry_run,
        out=out,
        endpoint=endpoint,
        report=report,
    )


def publish_space(
    repo_id: str,
    *,
    models_dir: str | Path = MODELS_DIR,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    message: str | None = None,
    dry_run: bool = False,
    out: str | Path | None = None,
    endpoint: str | None = None,
    report=print,
) -> str | None:
    """Assemble the lab as a Gradio Space and upload it. Returns the commit URL (None for a dry run)."""
    return _publish(
        lambda dest: assemble_space(dest, repo_id, models_dir),
        repo_id,
        "space",
        token=token,
        private=private,
        revision=revision,
        message=message or "Upload the GPT-2 mini lab with publish.py",
        dry_run=dry_run,
        out=out,
        endpoint=endpoint,
        report=report,
    )


def _publish(assemble, repo_id, repo_type, *, dry_run, out, report, **upload_options) -> str | None:
    check_repo_id(repo_id)
    if not dry_run:
        check_can_upload(upload_options.get("token"))
    if out is not None and Path(out).exists():
        raise UsageError(f"--out {out} already exists: name a new folder (it is written whole, then kept)")
    with tempfile.TemporaryDirectory(prefix="gpt2mini-publish-") as tmp:
        folder = assemble(Path(out) if out is not None else Path(tmp) / "repo")
        files = repo_files(folder)
        size = sum((folder / f).stat().st_size for f in files)
        kind = "Space" if repo_type == "space" else "model repository"
        verb = "would upload" if dry_run else "uploading"
        print(f"{verb} {len(files)} files ({size / 1e6:.1f} MB) to the {kind} {repo_id}:", file=sys.stderr)
        for f in files:
            report(f"{(folder / f).stat().st_size:>12,}  {f}")
        if dry_run:
            return None
        url = upload(folder, repo_id, repo_type=repo_type, **upload_options)
        print(f"done: {url}", file=sys.stderr)
        return url

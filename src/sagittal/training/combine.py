"""One weights file from the stages of others (no training): a base file's stages plus named
stages taken from other files, e.g. a second coarse network (``coarse2``) or the CT planes'
refinement (``refine_ct``; ``landmarks.model.EXTRA_STAGES``). Each stage taken records where it
came from (file name and SHA-256) in its ``meta``.

    .venv/bin/python -m sagittal.training.combine BASE.pt OUT.pt --take coarse2=OTHER.pt:coarse [--take ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def combine_stages(base: Path, out: Path, takes: dict[str, tuple[Path, str]]) -> None:
    """Write ``base``'s blob with ``takes`` (stage → (file, its stage)) put in, then OUT's ``.sha256``.
    Every file read is checked against its sidecar when it has one."""
    import torch

    from ..errors import InputError
    from ..fsio import atomic_path
    from ..landmarks.model import EXTRA_STAGES
    from ..landmarks.weights import sha256_file, verify, write_checksum

    verify(base)
    blob = dict(torch.load(base, map_location="cpu", weights_only=True))
    if not all(s in blob or s in takes for s in ("coarse", "refine")):
        raise InputError(f"{base}: neither it nor the stages taken hold both the coarse and the refine network")
    for stage, (path, source_stage) in takes.items():
        if stage not in ("coarse", "refine", *EXTRA_STAGES):
            raise InputError(f"{stage}: not a stage a weights file holds ({', '.join(['coarse', 'refine', *EXTRA_STAGES])})")
        verify(path)
        src = torch.load(path, map_location="cpu", weights_only=True)
        if source_stage not in src:
            raise InputError(f"{path}: has no {source_stage} stage")
        if EXTRA_STAGES.get(stage, stage) != EXTRA_STAGES.get(source_stage, source_stage):
            raise InputError(f"{stage} is a {EXTRA_STAGES.get(stage, stage)} network; {path}'s {source_stage} is not")
        taken = dict(src[source_stage])
        taken["meta"] = {**taken.get("meta", {}), "stage": stage,
                         "taken_from": f"{Path(path).name} ({source_stage} stage; file SHA-256 {sha256_file(path)})"}
        blob[stage] = taken
    blob["combined_from"] = {"base": f"{Path(base).name} (file SHA-256 {sha256_file(base)})",
                             "takes": {s: f"{Path(p).name}:{src}" for s, (p, src) in takes.items()}}
    with atomic_path(out) as tmp:
        torch.save(blob, tmp)
    write_checksum(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base")
    ap.add_argument("out")
    ap.add_argument("--take", action="append", default=[], metavar="STAGE=FILE:SOURCE_STAGE", required=True)
    args = ap.parse_args(argv)
    takes: dict[str, tuple[Path, str]] = {}
    for t in args.take:
        stage, _, rest = t.partition("=")
        path, _, source = rest.rpartition(":")
        if not (stage and path and source):
            ap.error(f"--take {t}: expected STAGE=FILE:SOURCE_STAGE")
        if stage in takes:
            ap.error(f"--take {t}: {stage} is already taken from {takes[stage][0]}")
        takes[stage] = (Path(path), source)
    from ..errors import InputError

    try:
        combine_stages(Path(args.base), Path(args.out), takes)
    except (InputError, OSError) as exc:
        ap.error(str(exc))
    print(f"wrote {args.out}: {args.base} with " + ", ".join(f"{s} from {p}:{src}" for s, (p, src) in takes.items()))


if __name__ == "__main__":
    main()

"""The ``sagittal`` command line: thin wrappers over the Python API.

``main(argv=None) -> int`` so tests call it directly. Only subcommands that work are
registered.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import SagittalError

log = logging.getLogger("sagittal")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def _cmd_phantom(args: argparse.Namespace) -> int:
    from .phantom.generate import generate

    style = {}
    for key in ("field_of_view", "facing", "calibration", "photometric"):
        if getattr(args, key) is not None:
            style[key] = getattr(args, key)
    if args.pixel_spacing is not None:
        style["pixel_spacing_mm"] = args.pixel_spacing
    doc = generate(args.outdir, n=args.n, modality=args.modality, seed=args.seed,
                   transfer_syntax=args.transfer_syntax, n_fractures=args.fractures, renderer=args.renderer, **style)
    files = sum(len(img["files"]) for case in doc["cases"] for img in case["images"])
    print(f"wrote {len(doc['cases'])} {args.modality.upper()} case(s), {files} DICOM file(s) and truth.json to {args.outdir}")
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    import json

    from .report.analysis import measure_input, rejected_document

    failed = 0
    for path in args.files:
        reason = None
        try:
            with open(path, encoding="utf-8") as fh:
                obj = json.load(fh)
            doc = measure_input(obj, where=path)
        except SagittalError as exc:  # measure_input's errors name the file already
            reason = str(exc)
        except (OSError, ValueError) as exc:  # reading or parsing the file
            reason = f"{path}: {exc}"
        if reason is not None:
            print(f"sagittal measure: error: {reason}", file=sys.stderr)
            doc = rejected_document(reason)
            failed += 1
        sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 1 if failed == len(args.files) else 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    import json
    from collections import Counter, defaultdict

    from .io import scan_export

    export = scan_export(args.inputs, decode_pixels=not args.headers_only)
    if args.errors:
        from .batch import write_errors_csv

        write_errors_csv(export.set_aside, args.errors)
    if args.json:
        json.dump(export.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    by_patient: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for s in export.series:
        j = s.to_json()
        by_patient[j["patient"]][j["study_instance_uid"] or "(no StudyInstanceUID)"].append(j)
    print(f"{len(by_patient)} patient(s), {sum(len(v) for v in by_patient.values())} study(ies), "
          f"{len(export.series)} series, {len(export.set_aside)} file(s) set aside")
    for patient, studies in by_patient.items():
        print(f"\n{patient}")
        for study, series in studies.items():
            print(f"  study {study}")
            for j in series:
                _print_series(j)
    if export.set_aside:
        print("\nset aside:")
        # the same reason for many files counts once: the file's own name is taken out of it
        for (stage, reason), n in Counter((a.stage, a.reason.replace(a.path, "<file>"))
                                          for a in export.set_aside).most_common():
            print(f"  {n:4} x [{stage}] {reason[:150]}")
        if args.verbose:
            for a in export.set_aside:
                print(f"  {a.path}: [{a.stage}] {a.reason}")
    for w in export.warnings:
        print(f"warning: {w}")
    return 0


def _print_series(j: dict[str, Any]) -> None:
    """One line of ``sagittal inspect`` per series (``Series.to_json()``), then its warnings."""
    what = j["view"] or j["orientation"] or ""
    if j["weighting"]:
        what += f" {j['weighting']}"
    cal = j["calibration"] or {}
    sp = cal.get("pixel_spacing_mm")
    sp_txt = "no spacing" if not sp else f"{sp[0]:.4g} x {sp[1]:.4g} mm"
    if cal.get("slice_spacing_mm"):
        sp_txt += f", slices {cal['slice_spacing_mm']:.4g} mm"
    print(f"    {j['modality']:3} {j['kind']:10} {what:16} {j['instances']:4} file(s) {j['rows']}x{j['columns']}"
          f"  {sp_txt} [{cal.get('spacing_source')}]  decoder {','.join(j['decoder']) or '-'}"
          f"  {j['series_description'][:40]}")
    for w in j["warnings"]:
        print(f"        warning: {w}")


def _cmd_report(args: argparse.Namespace) -> int:
    from .findings.clinical import read_clinical_csv
    from .report.candidacy import build_reports, check_inputs, load_documents

    docs, warnings = load_documents(args.inputs)
    check_inputs(docs, warnings)
    clinical = read_clinical_csv(args.clinical) if args.clinical else {}
    reports = build_reports(docs, clinical, args.outdir, warnings)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    width = max((len(r["patient_id"]) for r in reports), default=10)
    print(f"{'patient':{width}}  category                      fractured levels")
    for r in reports:
        levels = ", ".join(f"{x['level']} ({x['category']})" for x in r["levels"]) or "none"
        print(f"{r['patient_id']:{width}}  {r['category']:29} {levels}")
    print(f"\nreports in {args.outdir}/patients/*/candidacy.html; cohort table {args.outdir}/candidacy.csv")
    return 0


def _analyze_outputs(args: argparse.Namespace) -> tuple[str, ...]:
    """Extra per-document outputs asked for (registered in ``sagittal.batch.units``)."""
    return tuple(name for name in ("sr",) if getattr(args, name, False))


def _cmd_analyze(args: argparse.Namespace) -> int:
    if (args.workers > 1 and not args.dask) or (args.dask or "").startswith("local"):
        from .batch.forkserver import worker_context

        worker_context(["distributed"] if args.dask else [])  # torch imports there while this process imports the rest
    from .batch.analyze import run_analyze

    result = run_analyze(args.inputs, args.outdir, device=args.device, workers=args.workers, dask=args.dask,
                         weights=args.weights, clinical=args.clinical, batch_size=args.batch_size,
                         mixed_precision=args.mixed_precision, outputs=_analyze_outputs(args), key=args.key)
    st = result["statuses"]
    print(f"analysed {result['analysed']} image(s) ({result['skipped_existing']} already done), "
          f"{result['set_aside']} file(s) set aside; documents: {st['ok']} ok, {st['partial']} partial, "
          f"{st['rejected']} rejected")
    print(f"outputs in {args.outdir}: per-image JSON + overlay PNG, summary.csv, errors.csv"
          + (", report/" if args.clinical else ""))
    return 0


def _cmd_cohort(args: argparse.Namespace) -> int:
    from .cohort.export import run_cohort

    result = run_cohort(args.inputs, args.outdir, args.key, args.clinical, workers=args.workers)
    for where, reason in result.errors:
        print(f"sagittal cohort: error: {where}: {reason} (skipped)", file=sys.stderr)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    rows = ", ".join(f"{n} {name}" for name, n in result.rows.items())
    print(f"read {result.n_documents} analysis document(s) from {result.n_files} file(s), skipped "
          f"{len(result.errors)}; wrote {rows} row(s) into {args.outdir} (Parquet + CSV, data_dictionary.json/.md, "
          "figures/)")
    if not result.n_documents:
        print("sagittal cohort: error: no usable analysis document (schema sagittal.analysis/1) under "
              f"{', '.join(args.inputs)}", file=sys.stderr)
        return 1
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .training.evaluate import evaluate, parse_spacing

    m = evaluate(args.images, args.annotations, args.format, args.outdir, spacing=parse_spacing(args.spacing),
                 weights=args.weights, device=args.device, log=lambda msg: print(f"sagittal evaluate: {msg}", file=sys.stderr))
    mm = m["point_error_mm_median"]
    print(f"evaluated {m['n_images']} image(s) ({m['n_failed']} failed): {m['vertebrae_found']}/{m['vertebrae_annotated']} "
          f"annotated vertebrae found, point error median {m['point_error_px_median'] or float('nan'):.2f} px"
          + (f" / {mm:.2f} mm" if mm is not None else "") + f"; metrics.json, metrics.md and plots in {args.outdir}")
    return 0 if m["n_images"] else 1


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .training.evaluate import parse_spacing
    from .training.finetune import finetune

    rec = finetune(args.images, args.annotations, args.format, args.out, spacing=parse_spacing(args.spacing),
                   init=args.weights, minutes=args.minutes, held_out=args.held_out, phantom=args.phantom,
                   freeze_bn=not args.bn_train,
                   **{k: v for k in ("phantom_share", "lr", "anchor", "refine_anchor", "refine_phantom_share", "refine_lr",
                                     "steps", "refine_steps", "distill", "refine_distill")
                      if (v := getattr(args, k)) is not None},
                   device=args.device, seed=args.seed, log=lambda msg: print(msg, file=sys.stderr))
    for when in ("held_out_before", "held_out_after"):
        if when in rec:
            print(f"{when.replace('_', ' ')}: " + ", ".join(f"{k} {v:.4g}" for k, v in rec[when].items()))
    print(f"wrote {args.out} (+ .sha256); use it with: sagittal analyze --weights {args.out}")
    return 0


def _query(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. PatientID=123), not {text!r}")
    return key, value


def _cmd_pull(args: argparse.Namespace) -> int:
    from .pacs import pull

    if not args.study and not args.query:
        raise SagittalError("name the studies: --study UID and/or --query KEY=VALUE")
    result = pull(args.url, args.outdir, study_uids=args.study or (), query=dict(args.query) if args.query else None)
    print(f"pulled {len(result.files)} file(s) ({result.skipped_existing} already there) from "
          f"{len(result.studies)} study(ies) into {args.outdir}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from .pacs import push

    result = push(args.url, args.inputs)
    for path, reason in result.failed:
        print(f"sagittal push: not stored: {path}: {reason}", file=sys.stderr)
    print(f"stored {len(result.stored)} instance(s); {len(result.failed)} file(s) not stored")
    return 0 if result.stored or not result.failed else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sagittal", description="Spinal sagittal balance and vertebral-fracture analysis.")
    p.add_argument("--version", action="version", version=f"sagittal {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)

    ph = sub.add_parser("phantom", help="write synthetic spine studies (DICOM) with their ground truth",
                        description="Write synthetic spine studies whose truth is known exactly: DICOM files "
                                    "and OUTDIR/truth.json (landmarks, parameters, fractures).")
    ph.add_argument("outdir")
    ph.add_argument("--n", type=_positive_int, default=1, help="number of cases (default 1)")
    ph.add_argument("--modality", choices=["dx", "cr", "ct", "mr"], default="dx")
    ph.add_argument("--seed", type=int, default=0)
    ph.add_argument("--transfer-syntax", choices=["explicit", "jpeg2000", "jpegls", "rle"], default="explicit")
    ph.add_argument("--fractures", type=int, default=None, help="fractures per spine (default: drawn at random)")
    ph.add_argument("--field-of-view", choices=["whole", "lumbar"], default=None, help="radiographs only")
    ph.add_argument("--facing", choices=["left", "right"], default=None, help="radiographs only")
    ph.add_argument("--calibration", default=None,
                    choices=["PixelSpacing", "ImagerPixelSpacing/ERMF", "both", "ImagerPixelSpacing", "none"],
                    help="which spacing tags a radiograph carries (DX always has ImagerPixelSpacing)")
    ph.add_argument("--photometric", choices=["MONOCHROME1", "MONOCHROME2"], default=None)
    ph.add_argument("--pixel-spacing", type=_positive_float, default=None, metavar="MM",
                    help="radiograph pixel spacing at the patient, mm")
    ph.add_argument("--renderer", choices=["2d", "drr"], default="2d",
                    help="radiographs: 2d = painted sagittal outlines (default); drr = cone-beam projection of a 3-D "
                         "phantom with other anatomy and looks (sagittal.phantom.drr)")
    ph.set_defaults(func=_cmd_phantom)

    ins = sub.add_parser("inspect", help="what is in a DICOM export: patients, studies, series, files set aside",
                         description="Discover, group, classify, decode and calibrate every file under INPUT. "
                                     "Patient names never appear; patients are shown as stable pseudonyms.")
    ins.add_argument("inputs", nargs="+", metavar="INPUT")
    ins.add_argument("--json", action="store_true", help="machine-readable: {series: [...], set_aside: [...]}")
    ins.add_argument("--headers-only", action="store_true", help="read headers only (fast; decoding is not tried)")
    ins.add_argument("--errors", metavar="CSV", help="also write the files set aside as path,stage,reason")
    ins.set_defaults(func=_cmd_inspect)

    an = sub.add_parser("analyze", help="lateral radiographs → landmarks, parameters, fractures (JSON + overlay)",
                        description="Discover DICOM under INPUT, analyse every lateral radiograph with the landmark "
                                    "model, and write one analysis document (sagittal.analysis/1) and overlay PNG "
                                    "per image, summary.csv and errors.csv under OUTDIR. Reruns skip finished images.")
    an.add_argument("inputs", nargs="+", metavar="INPUT")
    an.add_argument("-o", "--outdir", required=True)
    an.add_argument("--clinical", metavar="FILE", help="also write the candidacy report (see 'sagittal report')")
    an.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    an.add_argument("--workers", type=_positive_int, default=1, help="local processes (each loads the model once)")
    an.add_argument("--dask", metavar="ADDRESS", default=None,
                    help="run on a Dask cluster: local or local:N (a LocalCluster of N worker processes) or "
                         "tcp://HOST:PORT (a running scheduler); needs the 'dask' extra")
    an.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                    help="images per landmark-model batch (default 1 on CPU, 16 on CUDA)")
    an.add_argument("--mixed-precision", action="store_true",
                    help="CUDA only: run the networks in float16 autocast (not validated for accuracy; off by default)")
    an.add_argument("--weights",
                    help="landmark weights (default: the packaged sagittal/weights/landmarks.pt, or $SAGITTAL_WEIGHTS)")
    an.add_argument("--sr", action="store_true",
                    help="also write beside each document a DICOM Comprehensive SR (TID 1500: every value with its "
                         "landmarks on the source image) and the overlay as a Secondary Capture, both in the source's "
                         "study, new series (<document>.sr.dcm, <document>.sc.dcm)")
    an.add_argument("--key", metavar="KEYFILE", default=None,
                    help="key the patient pseudonyms of folder names and summary.csv with this secret key file "
                         "(created 0600 when absent), as 'sagittal cohort --key' does")
    an.set_defaults(func=_cmd_analyze)

    rp = sub.add_parser("report", help="vertebral-augmentation candidacy report per patient (JSON, HTML, CSV)",
                        description="Group analysis documents per patient (source.patient_id), weigh them with the "
                                    "clinical CSV, and write OUTDIR/patients/*/candidacy.json and .html and "
                                    "OUTDIR/candidacy.csv. Decision support only.")
    rp.add_argument("inputs", nargs="+", metavar="INPUT", help="analysis documents (.json, .jsonl) or folders of them")
    rp.add_argument("--clinical", metavar="FILE", help="clinical CSV keyed by patient_id (see README)")
    rp.add_argument("-o", "--outdir", required=True)
    rp.set_defaults(func=_cmd_report)

    me = sub.add_parser("measure", help="compute every parameter from landmarks alone (JSON Lines out)",
                        description="Each FILE holds {\"image\": {...}, \"landmarks\": {...}} in the contract's shapes. "
                                    "Prints one analysis document per input, one per line, in input order; an "
                                    "unreadable input gets a 'rejected' document and an error on stderr.")
    me.add_argument("files", nargs="+", metavar="FILE")
    me.set_defaults(func=_cmd_measure)

    co = sub.add_parser("cohort", help="de-identified research tables from analysis documents (Parquet + CSV)",
                        description="Find analysis documents (sagittal.analysis/1) under ANALYSIS_DIR, link each "
                                    "patient's studies over time and write the studies, vertebrae and progression "
                                    "tables (Parquet + CSV), a data dictionary and figures into OUTDIR. Patients are "
                                    "keyed pseudonyms (HMAC-SHA-256 with the secret in KEYFILE, created with mode 0600 "
                                    "when absent: keep it, and keep it out of OUTDIR); dates become days since the "
                                    "patient's first study; no UID, name, ID, date or free text is written.")
    co.add_argument("inputs", nargs="+", metavar="ANALYSIS_DIR", help="folders (or files) of analysis documents")
    co.add_argument("-o", "--outdir", required=True)
    co.add_argument("--key", required=True, metavar="KEYFILE", help="secret key file (created 0600 when absent)")
    co.add_argument("--clinical", metavar="FILE", help="clinical CSV keyed by patient_id, with the optional treatment "
                    "and outcome columns (see docs/cohort.md)")
    co.add_argument("--workers", type=_positive_int, default=1, help="processes reading documents (default 1)")
    co.set_defaults(func=_cmd_cohort)

    auth = ("Credentials come from the environment only: SAGITTAL_DICOMWEB_TOKEN (bearer), or "
            "SAGITTAL_DICOMWEB_USER and SAGITTAL_DICOMWEB_PASSWORD (basic). TLS certificates are verified "
            "(REQUESTS_CA_BUNDLE names your CA). Needs the 'dicomweb' extra.")
    for name, helptext in (("evaluate", "the model against your annotated radiographs (metrics.json, metrics.md, plots)"),
                           ("finetune", "adapt the model to your annotated radiographs (writes a weights file)")):
        ev = sub.add_parser(name, help=helptext, description=helptext + ". Formats: BUU-LSPINE lateral CSV (buu), COCO "
                            "keypoints JSON (coco), sagittal's {image, landmarks} JSON (sagittal); see docs/contract.md.")
        ev.add_argument("images", nargs="+", metavar="IMAGES", help="DICOM, PNG or JPEG files, or folders of them")
        ev.add_argument("--annotations", required=True, metavar="PATH", help="annotation file or folder")
        ev.add_argument("--format", required=True, choices=("buu", "coco", "sagittal"))
        ev.add_argument("--spacing", metavar="MM", help="pixel spacing (MM or ROW,COL) for PNG/JPEG or to replace the "
                        "header's; without it millimetre figures are null")
        ev.add_argument("--weights", help="landmark weights (default: the packaged ones)" if name == "evaluate" else
                        "weights to start from (default: the packaged ones)")
        ev.add_argument("--device", default="auto", help="auto, cpu or cuda")
        if name == "evaluate":
            ev.add_argument("-o", "--outdir", required=True)
            ev.set_defaults(func=_cmd_evaluate)
        else:
            ev.add_argument("-o", "--out", required=True, metavar="WEIGHTS", help="weights file to write")
            ev.add_argument("--minutes", type=_positive_float, default=60.0, help="wall-clock cap (default 60; the "
                            "default steps take about 25 minutes on one CPU thread)")
            ev.add_argument("--held-out", type=float, default=0.2, help="share of images held out (default 0.2)")
            ev.add_argument("--phantom", type=int, default=200, help="phantom radiographs mixed in (default 200)")
            ev.add_argument("--steps", type=_positive_int, help="the coarse stage's optimizer steps (the learning-rate "
                            "schedule follows them; default: the measured recipe's, see models/README.md)")
            ev.add_argument("--refine-steps", type=_positive_int, help="the refinement stage's steps (default: the measured "
                            "recipe's, see models/README.md)")
            ev.add_argument("--phantom-share", type=float, help="share of every coarse batch drawn from the phantoms")
            ev.add_argument("--lr", type=_positive_float, help="the coarse stage's peak learning rate")
            ev.add_argument("--anchor", type=float, help="the coarse stage's L2-SP weight pulling the weights towards the "
                            "starting ones (0: off, weight decay instead)")
            ev.add_argument("--refine-phantom-share", type=float, help="the refinement stage's phantom share")
            ev.add_argument("--refine-lr", type=_positive_float, help="the refinement stage's peak learning rate")
            ev.add_argument("--refine-anchor", type=float, help="the refinement stage's L2-SP weight (each option left "
                            "out: the measured recipe's value, models/README.md)")
            ev.add_argument("--distill", type=float, help="the same for the coarse stage's heatmaps and offsets")
            ev.add_argument("--refine-distill", type=float, help="weight of a loss that keeps the refinement's outputs on "
                            "the mixed-in phantoms where the starting weights put them (learning without forgetting)")
            ev.add_argument("--bn-train", action="store_true", help="let BatchNorm running statistics follow your images "
                            "(default: frozen, so the original look is not shifted)")
            ev.add_argument("--seed", type=int, default=0)
            ev.set_defaults(func=_cmd_finetune)
    pu = sub.add_parser("pull", help="retrieve studies from a PACS over DICOMweb (QIDO-RS + WADO-RS)",
                        description="Find studies by UID and/or a QIDO-RS query and retrieve every instance "
                                    "(as stored, no transcoding) into OUTDIR/<study>/<series>/<sop>.dcm. " + auth)
    pu.add_argument("url", metavar="URL", help="DICOMweb service root, e.g. https://pacs.example.org/dicom-web")
    pu.add_argument("--study", nargs="+", metavar="UID", default=[], help="Study Instance UIDs")
    pu.add_argument("--query", action="append", type=_query, metavar="KEY=VALUE", default=[],
                    help="QIDO-RS study filter (repeatable), e.g. PatientID=123, StudyDate=20250101-20250131, "
                         "ModalitiesInStudy=DX")
    pu.add_argument("-o", "--outdir", required=True)
    pu.set_defaults(func=_cmd_pull)
    ps = sub.add_parser("push", help="store DICOM files (SR, Secondary Capture …) in a PACS over DICOMweb (STOW-RS)",
                        description="Store every DICOM file under FILE_OR_DIR with STOW-RS; files that are not DICOM "
                                    "or that the PACS refuses are listed with the reason. " + auth)
    ps.add_argument("url", metavar="URL", help="DICOMweb service root")
    ps.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    ps.set_defaults(func=_cmd_push)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (SagittalError, ValueError) as exc:
        print(f"sagittal {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Write phantom images as valid DICOM: DX and CR radiographs, CT and MR series.

Each writer builds the modules its IOD requires (PS3.3 A.26 DX, A.2 CR, A.3 CT, A.4 MR)
and leaves encoding to pydicom with the pylibjpeg / pyjpegls plugins, so a written file is
a real JPEG 2000, JPEG-LS or RLE lossless stream. UIDs are derived from the caller's seed, so
the same seed writes the same files.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from ..fsio import atomic_path
from .radiograph import Radiograph
from .volume import MR_SEQUENCES, Volume

TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "jpeg2000": JPEG2000Lossless,
    "jpegls": JPEGLSLossless,
    "rle": RLELossless,
}
SOP_CLASS = {
    "DX": UID("1.2.840.10008.5.1.4.1.1.1.1"),  # Digital X-Ray Image Storage - For Presentation
    "CR": UID("1.2.840.10008.5.1.4.1.1.1"),  # Computed Radiography Image Storage
    "CT": UID("1.2.840.10008.5.1.4.1.1.2"),
    "MR": UID("1.2.840.10008.5.1.4.1.1.4"),
}
_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root for generated UIDs


@dataclass(frozen=True)
class StudyInfo:
    """Who and when: a synthetic patient and one study of theirs."""

    patient_id: str
    patient_name: str
    birth_date: str  # YYYYMMDD
    sex: str  # M, F or O
    study_uid: str
    study_date: str  # YYYYMMDD
    study_id: str
    accession: str

    @classmethod
    def make(cls, key: str, patient_id: str, *, study_date: str = "20250101", age_years: int = 70, sex: str = "F",
             study_id: str = "1") -> StudyInfo:
        """A study whose UID is derived from ``key`` (deterministic)."""
        d = _dt.date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:]))
        birth = d.replace(year=d.year - age_years, day=1)
        return cls(
            patient_id=patient_id,
            patient_name=f"PHANTOM^{patient_id}",
            birth_date=birth.strftime("%Y%m%d"),
            sex=sex,
            study_uid=uid_for(key, "study"),
            study_date=study_date,
            study_id=study_id,
            accession=f"A{abs(hash_int(key)) % 10**8:08d}",
        )


def hash_int(key: str) -> int:
    """A stable integer from a string (Python's ``hash`` is salted per process)."""
    h = 1469598103934665603
    for ch in key.encode():
        h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def uid_for(key: str, what: str) -> str:
    return generate_uid(_PREFIX, entropy_srcs=[key, what])


def _base(info: StudyInfo, modality: str, series_uid: str, sop_uid: str, series_number: int,
          instance_number: int, series_description: str, body_part: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SOP_CLASS[modality]
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = info.study_date
    ds.InstanceCreationTime = "100000"
    # patient
    ds.PatientName = info.patient_name
    ds.PatientID = info.patient_id
    ds.PatientBirthDate = info.birth_date
    ds.PatientSex = info.sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthetic phantom: no real patient"
    # study
    ds.StudyInstanceUID = info.study_uid
    ds.StudyDate = info.study_date
    ds.StudyTime = "100000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = info.study_id
    ds.AccessionNumber = info.accession
    ds.StudyDescription = "SPINE PHANTOM"
    # series
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.SeriesDate = info.study_date
    ds.SeriesTime = "100000"
    ds.BodyPartExamined = body_part
    # equipment
    ds.Manufacturer = "sagittal phantom"
    ds.ManufacturerModelName = "sagittal.phantom"
    ds.SoftwareVersions = "0.1"
    # image
    ds.InstanceNumber = instance_number
    ds.ContentDate = info.study_date
    ds.ContentTime = "100000"
    ds.AcquisitionDate = info.study_date
    ds.AcquisitionTime = "100000"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    return ds


def _pixels(ds: Dataset, arr: np.ndarray, bits_stored: int, photometric: str) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(arr, dtype="<u2").tobytes()
    ds["PixelData"].VR = "OW"
    lo, hi = int(arr.min()), int(arr.max())
    ds.SmallestImagePixelValue = lo
    ds.LargestImagePixelValue = hi
    ds["SmallestImagePixelValue"].VR = "US"
    ds["LargestImagePixelValue"].VR = "US"


def radiograph_dataset(rg: Radiograph, info: StudyInfo, key: str, *, series_number: int = 1,
                       series_description: str | None = None) -> Dataset:
    """A DX (For Presentation) or CR dataset for ``rg``, calibration tags as ``rg.calibration``."""
    modality = rg.modality
    series_uid = uid_for(key, "series")
    desc = series_description or ("WHOLE SPINE LAT" if rg.field_of_view == "whole" else "L-SPINE LAT")
    ds = _base(info, modality, series_uid, uid_for(key, "sop"), series_number, 1, desc,
               "SPINE" if rg.field_of_view == "whole" else "LSPINE")
    # a standing lateral: the patient faces the image's left (anterior = A on the left) or right
    ds.PatientOrientation = ["A", "F"] if rg.facing == "right" else ["P", "F"]
    ds.ViewPosition = "LL" if rg.facing == "left" else "RL"
    ds.ImageLaterality = "U"
    ds.ProtocolName = desc
    ds.KVP = "90"
    ds.DistanceSourceToDetector = "1800"
    ds.DistanceSourceToPatient = f"{1800 / rg.magnification:.1f}"
    row, col = rg.imager_spacing_mm
    pat_row, pat_col = rg.spacing_mm
    if rg.calibration in ("ImagerPixelSpacing/ERMF", "both", "ImagerPixelSpacing"):
        ds.ImagerPixelSpacing = [f"{row:.6g}", f"{col:.6g}"]
    if rg.calibration in ("ImagerPixelSpacing/ERMF", "both"):
        ds.EstimatedRadiographicMagnificationFactor = f"{rg.magnification:.6g}"
    if rg.calibration in ("PixelSpacing", "both"):
        ds.PixelSpacing = [f"{pat_row:.6g}", f"{pat_col:.6g}"]
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "magnification at the midsagittal plane"
    _pixels(ds, rg.pixels, rg.bits_stored, rg.photometric)
    ds.ImageType = ["DERIVED", "PRIMARY"] if modality == "DX" else ["ORIGINAL", "PRIMARY"]
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.WindowCenter = f"{(1 << (rg.bits_stored - 1)):d}"
    ds.WindowWidth = f"{(1 << rg.bits_stored):d}"
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1 if rg.photometric == "MONOCHROME2" else -1
        ds.PresentationLUTShape = "IDENTITY" if rg.photometric == "MONOCHROME2" else "INVERSE"
        ds.AcquisitionContextSequence = Sequence()
        region = Dataset()  # DICOM CID 4031 Common Anatomic Regions
        region.CodeValue, region.CodingSchemeDesignator = (
            ("421060004", "SCT") if rg.field_of_view == "whole" else ("122496007", "SCT"))
        region.CodeMeaning = "Spine" if rg.field_of_view == "whole" else "Lumbar spine"
        ds.AnatomicRegionSequence = Sequence([region])
        ds.DetectorType = "SCINTILLATOR"
        ds.DetectorConfiguration = "AREA"
        ds.PositionerType = "NONE"
    return ds


def _mr_sequence(vol: Volume) -> dict[str, object]:
    """The acquisition parameters of an MR volume's sequence."""
    if vol.sequence is None or vol.sequence not in MR_SEQUENCES:
        raise ValueError(f"MR volume with unknown sequence {vol.sequence!r}; expected one of {', '.join(MR_SEQUENCES)}")
    return MR_SEQUENCES[vol.sequence]


def volume_datasets(vol: Volume, info: StudyInfo, key: str, *, series_number: int = 1) -> list[Dataset]:
    """One CT or MR dataset per slice of ``vol``, sharing a series and a frame of reference."""
    series_uid = uid_for(key, "series")
    frame_uid = uid_for(key + info.study_uid, "frame")
    out = []
    if vol.modality == "CT":
        desc = "TL SPINE PELVIS AXIAL"
    else:
        desc = str(_mr_sequence(vol)["description"])
    normal = np.cross(np.array(vol.orientation[:3]), np.array(vol.orientation[3:]))
    for k in range(vol.stored.shape[0]):
        ds = _base(info, vol.modality, series_uid, uid_for(key, f"sop{k}"), series_number, k + 1, desc, "SPINE")
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "FFS" if vol.modality == "CT" else "HFS"
        pos = vol.positions_lps[k]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6g}" for v in vol.orientation]
        ds.PixelSpacing = [f"{v:.6g}" for v in vol.pixel_spacing_mm]
        ds.SliceThickness = f"{vol.slice_thickness_mm:.6g}"
        ds.SliceLocation = f"{float(pos @ normal):.4f}"
        ds.ProtocolName = desc
        _pixels(ds, vol.stored[k], vol.bits_stored, "MONOCHROME2")
        if vol.modality == "CT":
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.RescaleSlope = f"{vol.rescale[0]:g}"
            ds.RescaleIntercept = f"{vol.rescale[1]:g}"
            ds.RescaleType = "HU"
            ds.KVP = "120"
            ds.AcquisitionNumber = 1
            ds.ConvolutionKernel = "B30f"
            ds.WindowCenter = ["40", "400"]
            ds.WindowWidth = ["400", "1800"]
        else:
            seq = _mr_sequence(vol)
            ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
            ds.ScanningSequence = seq["scanning"]
            ds.SequenceVariant = seq["variant"]
            ds.ScanOptions = "FS" if vol.sequence == "T2FS" else ""  # FS: fat saturation (PS3.3 C.8.3.1)
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime = f"{seq['tr']:g}"
            ds.EchoTime = f"{seq['te']:g}"
            ds.EchoTrainLength = seq["etl"]
            if seq["ti"] is not None:
                ds.InversionTime = f"{seq['ti']:g}"
            ds.SequenceName = vol.sequence
            ds.MagneticFieldStrength = "1.5"
            ds.ImagingFrequency = "63.87"
            ds.ImagedNucleus = "1H"
            ds.SpacingBetweenSlices = f"{vol.slice_thickness_mm:g}"
            ds.AcquisitionNumber = 1
        out.append(ds)
    return out


def write_dataset(ds: Dataset, path: str | os.PathLike[str], transfer_syntax: str = "explicit") -> Path:
    """Encode ``ds`` with ``transfer_syntax`` (a key of ``TRANSFER_SYNTAXES``) and write it atomically."""
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"unknown transfer syntax {transfer_syntax!r}; expected one of {', '.join(TRANSFER_SYNTAXES)}")
    ts = TRANSFER_SYNTAXES[transfer_syntax]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "SAGITTAL_010"
    ds.file_meta = meta
    if ts != ExplicitVRLittleEndian:
        plugin = "pylibjpeg" if ts in (JPEG2000Lossless, RLELossless) else ""
        # keep the SOP Instance UID derived from the key (pydicom would generate a random one)
        ds.compress(ts, encoding_plugin=plugin, generate_instance_uid=False)
        ds.LossyImageCompression = "00"
    path = Path(path)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path

"""Write DICOM Part-10 files for a patient's imaging studies.

Each instance of each FHIR ImagingStudy becomes a small but valid file under
`dicom/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`, carrying the
same UIDs, accession number and patient identity as the FHIR side, so the lake
can join modalities. Pixel data is a 16x16 image from a seeded numpy generator:
real enough for header parsers, small enough to write hundreds per second.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from medlake.generate import model as m
from medlake.generate.util import dicom_date, dicom_time

IMPLEMENTATION_CLASS_UID = "2.25.261831452690387212049355453305263573841"
IMPLEMENTATION_VERSION = "MEDLAKE_GEN_1"
SIZE = 16


def write_study(root: Path, p: m.Patient, s: m.ImagingStudy) -> list[Path]:
    """Write every instance of a study; returns the paths written."""
    rng = np.random.default_rng(s.pixel_seed)
    paths = []
    for series in s.series:
        folder = root / s.study_uid / series.uid
        folder.mkdir(parents=True, exist_ok=True)
        for inst in series.instances:
            ds = _dataset(p, s, series, inst, rng)
            path = folder / f"{inst.uid}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def _file_meta(s: m.ImagingStudy, inst: m.Instance) -> FileMetaDataset:
    """Part-10 file meta: SOP class of the modality, explicit VR little endian."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = s.definition.sop_class_uid
    meta.MediaStorageSOPInstanceUID = inst.uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


def _dataset(p: m.Patient, s: m.ImagingStudy, series: m.Series, inst: m.Instance,
             rng: np.random.Generator) -> Dataset:
    """Patient, study, series, equipment, modality-specific and pixel attributes."""
    ds = Dataset()
    ds.file_meta = _file_meta(s, inst)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] + (["AXIAL"] if s.definition.modality in ("CT", "MR") else [])
    ds.SOPClassUID = s.definition.sop_class_uid
    ds.SOPInstanceUID = inst.uid
    _patient(ds, p, s)
    _study(ds, p, s)
    _series(ds, s, series, inst)
    MODALITY_ATTRS[s.definition.modality](ds, series, inst)
    _pixels(ds, s.definition.modality, rng)
    return ds


def _patient(ds: Dataset, p: m.Patient, s: m.ImagingStudy) -> None:
    """Patient module: identity identical to the FHIR Patient (PatientID is the MRN)."""
    ds.PatientName = p.dicom_name
    ds.PatientID = p.mrn
    ds.IssuerOfPatientID = "hospital.example.org"
    ds.PatientBirthDate = dicom_date(p.birth_date)
    ds.PatientSex = "M" if p.gender == "male" else "F"
    ds.PatientAge = f"{p.age_at(s.started):03d}Y"


def _study(ds: Dataset, p: m.Patient, s: m.ImagingStudy) -> None:
    """General study and equipment modules."""
    d = s.definition
    ds.StudyInstanceUID = s.study_uid
    ds.StudyDate = dicom_date(s.started)
    ds.StudyTime = dicom_time(s.started)
    ds.AccessionNumber = s.accession
    ds.StudyID = s.accession[-6:]
    ds.StudyDescription = d.description
    ds.ReferringPhysicianName = s.referrer.dicom_name
    ds.NameOfPhysiciansReadingStudy = s.radiologist.dicom_name
    ds.InstitutionName = s.encounter.organization
    ds.Manufacturer, ds.ManufacturerModelName = s.device
    ds.DeviceSerialNumber = s.device_serial
    ds.StationName = f"{d.modality}{s.device_serial[-2:]}"
    ds.SoftwareVersions = "VA20A"
    ds.BodyPartExamined = d.body_part
    ds.FrameOfReferenceUID = s.frame_of_reference_uid


def _series(ds: Dataset, s: m.ImagingStudy, series: m.Series, inst: m.Instance) -> None:
    """General series and image modules."""
    ds.Modality = s.definition.modality
    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = series.number
    ds.SeriesDescription = series.description
    ds.SeriesDate = dicom_date(series.started)
    ds.SeriesTime = dicom_time(series.started)
    acquired = series.started + timedelta(seconds=7 * inst.number)
    ds.AcquisitionDate = ds.ContentDate = dicom_date(acquired)
    ds.AcquisitionTime = ds.ContentTime = dicom_time(acquired)
    ds.InstanceNumber = inst.number
    if s.definition.modality in ("CT", "MR"):
        ds.PatientPosition = "HFS"


def _cross_sectional(ds: Dataset, inst: m.Instance, thickness: float) -> None:
    """Geometry shared by CT and MR: slice position, orientation, spacing."""
    z = -100.0 + thickness * (inst.number - 1)
    ds.SliceThickness = thickness
    ds.PixelSpacing = [0.78125, 0.78125]
    ds.ImagePositionPatient = [-200.0, -200.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = z


def _ct(ds: Dataset, series: m.Series, inst: m.Instance) -> None:
    """CT image module."""
    _cross_sectional(ds, inst, 1.25 if "1.25" in series.description else 5.0)
    ds.KVP = 120
    ds.XRayTubeCurrent = 250
    ds.ConvolutionKernel = "LUNG" if "Lung" in series.description else "STANDARD"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"


def _mr(ds: Dataset, series: m.Series, inst: m.Instance) -> None:
    """MR image module; field strength follows the scanner model."""
    _cross_sectional(ds, inst, 5.0)
    ds.MagneticFieldStrength = 3 if "Skyra" in ds.ManufacturerModelName else 1.5
    t1 = "T1" in series.description
    ds.EchoTime = 12 if t1 else 95
    ds.RepetitionTime = 550 if t1 else 4000
    ds.ScanningSequence = "EP" if "DWI" in series.description else "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.ImagingFrequency = 127.7 if ds.MagneticFieldStrength == 3 else 63.9


def _projection(ds: Dataset, view: str) -> None:
    """Projection radiography attributes shared by CR and MG."""
    ds.ViewPosition = view
    ds.ImagerPixelSpacing = [0.1, 0.1]
    ds.PixelSpacing = [0.1, 0.1]


def _cr(ds: Dataset, series: m.Series, inst: m.Instance) -> None:
    """CR image module."""
    _projection(ds, "LL" if series.description == "Lateral" else "PA")
    ds.KVP = 120 if series.description == "Lateral" else 110
    ds.Exposure = 4
    ds.ExposureTime = 12


def _mg(ds: Dataset, series: m.Series, inst: m.Instance) -> None:
    """Digital mammography: laterality and view from the series description (e.g. 'L CC')."""
    side, view = series.description.split()
    _projection(ds, view)
    ds.ImageLaterality = side
    ds.Laterality = side
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.KVP = 29
    ds.BodyPartThickness = 52
    ds.CompressionForce = 110


def _us(ds: Dataset, series: m.Series, inst: m.Instance) -> None:
    """Ultrasound image attributes."""
    ds.TransducerData = ["C5-1", "", ""]
    ds.ProcessingFunction = "ABDOMEN"


MODALITY_ATTRS = {"CT": _ct, "MR": _mr, "CR": _cr, "MG": _mg, "US": _us}


def _pixels(ds: Dataset, modality: str, rng: np.random.Generator) -> None:
    """Tiny monochrome image: 8-bit for ultrasound, 12-in-16-bit otherwise."""
    ds.Rows = ds.Columns = SIZE
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0
    if modality == "US":
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        pixels = rng.integers(0, 256, size=(SIZE, SIZE), dtype=np.uint8)
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        pixels = rng.integers(0, 4096, size=(SIZE, SIZE), dtype=np.uint16)
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()

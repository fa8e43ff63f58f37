"""The patient model: plain facts about one simulated patient.

The simulator (patient.py) decides *what happened* to a patient and records it
here; the writers (fhir.py, dicom.py, vcf.py) only *render* these facts. Because
every writer reads the same facts, the MRN in a DICOM header, the name in a note
and the sample in the VCF manifest cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from medlake.generate.clinical import AllergyDef, Code, ConditionDef, ImagingDef, Med, ObsDef


@dataclass(frozen=True)
class Clinician:
    """A clinician known only by name, NPI and specialty (no Practitioner resource)."""

    given: str
    family: str
    npi: str
    specialty: str

    @property
    def display(self) -> str:
        """How FHIR displays and notes name the clinician."""
        return f"Dr. {self.given} {self.family}"

    @property
    def dicom_name(self) -> str:
        """DICOM PN form (Family^Given)."""
        return f"{self.family}^{self.given}"


@dataclass
class Encounter:
    """A visit; most other facts hang off one."""

    id: str
    cls: str  # AMB / EMER / IMP
    type_key: str
    start: datetime
    end: datetime
    clinician: Clinician
    organization: str
    reason: Condition | None = None


@dataclass
class Condition:
    """A diagnosis; `control` says how well it is controlled where that matters."""

    id: str
    definition: ConditionDef
    code: Code
    onset: datetime
    recorded: datetime
    encounter: Encounter
    abatement: datetime | None = None
    control: str = ""  # "well" / "poor" for hypertension and diabetes

    @property
    def label(self) -> str:
        """How a note names it; CKD carries its stage from the coded display."""
        if self.definition.key == "ckd":
            return self.code.display.split(" (")[0].lower()
        return self.definition.label


@dataclass
class Observation:
    """A measurement; a panel has components, smoking status has a coded value."""

    id: str
    definition: ObsDef | None
    code: Code
    category: str
    effective: datetime
    encounter: Encounter
    value: float | None = None
    components: list[tuple[ObsDef, float]] = field(default_factory=list)
    value_code: Code | None = None


@dataclass
class MedicationRequest:
    """A prescription, linked to the condition it treats."""

    id: str
    med: Med
    status: str
    authored: datetime
    encounter: Encounter
    reason: Condition
    requester: Clinician


@dataclass
class Procedure:
    """A performed procedure."""

    id: str
    code: Code
    start: datetime
    end: datetime
    encounter: Encounter
    reason: Condition | None = None


@dataclass
class Immunization:
    """A vaccine administered at an encounter."""

    id: str
    code: Code
    date: datetime
    encounter: Encounter


@dataclass
class Allergy:
    """A recorded allergy."""

    id: str
    definition: AllergyDef
    recorded: datetime
    encounter: Encounter


@dataclass
class Instance:
    """One DICOM SOP instance."""

    uid: str
    number: int


@dataclass
class Series:
    """One DICOM series."""

    uid: str
    number: int
    description: str
    started: datetime
    instances: list[Instance]


@dataclass
class ImagingStudy:
    """An imaging exam: the DICOM study, the FHIR ImagingStudy and its DiagnosticReport."""

    id: str
    report_id: str
    definition: ImagingDef
    study_uid: str
    frame_of_reference_uid: str
    accession: str
    started: datetime
    issued: datetime
    encounter: Encounter
    reason: Condition | None
    referrer: Clinician
    radiologist: Clinician
    device: tuple[str, str]
    device_serial: str
    series: list[Series]
    findings: list[str]
    impression: str
    conclusion_code: Code
    report_text: str = ""
    pixel_seed: int = 0


@dataclass
class Note:
    """A clinical note (DocumentReference)."""

    id: str
    type_key: str
    code: Code
    date: datetime
    encounter: Encounter
    author: Clinician
    text: str


@dataclass
class Patient:
    """Everything generated for one patient, in the order it happened."""

    index: int
    id: str
    mrn: str
    ssn: str
    drivers_license: str | None
    prefix: str
    given: str
    family: str
    mothers_maiden_name: str
    gender: str  # male / female
    birth_date: date
    phone: str
    email: str
    street: str
    city: str
    state: str
    postal_code: str
    marital: str
    race: tuple[str, str]
    ethnicity: tuple[str, str]
    language: tuple[str, str]
    organization: str
    pcp: Clinician
    smoking: str = "never"
    deceased: datetime | None = None
    sample_id: str | None = None
    seed: int = 0
    encounters: list[Encounter] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    medications: list[MedicationRequest] = field(default_factory=list)
    procedures: list[Procedure] = field(default_factory=list)
    immunizations: list[Immunization] = field(default_factory=list)
    allergies: list[Allergy] = field(default_factory=list)
    imaging: list[ImagingStudy] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        """Name as it appears in notes."""
        return f"{self.given} {self.family}"

    @property
    def dicom_name(self) -> str:
        """DICOM PatientName (Family^Given), matching FHIR name.family / given[0]."""
        return f"{self.family}^{self.given}"

    def has(self, key: str) -> bool:
        """Whether the patient has the condition with this catalog key."""
        return any(c.definition.key == key for c in self.conditions)

    def condition(self, key: str) -> Condition | None:
        """The patient's condition with this key, if any."""
        return next((c for c in self.conditions if c.definition.key == key), None)

    def active_conditions(self, at: datetime) -> list[Condition]:
        """Conditions diagnosed by `at` and not yet resolved."""
        return [c for c in self.conditions
                if c.recorded <= at and (c.abatement is None or c.abatement > at)]

    def age_at(self, at: datetime | date) -> int:
        """Age in whole years at a date."""
        d = at.date() if isinstance(at, datetime) else at
        b = self.birth_date
        return d.year - b.year - ((d.month, d.day) < (b.month, b.day))

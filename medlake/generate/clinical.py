"""Code tables for the sample-data generator.

Everything the generator says clinically comes from these tables, so that the
FHIR resources, DICOM headers, notes and VCF all agree with each other and use
real terminology codes (SNOMED CT, LOINC, RxNorm, CVX, UCUM, DICOM). Keeping the
tables in one place means a downstream mapping (OMOP concepts, cohort marts) can
be checked against a single list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
OBS_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
DOC_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
OMB_RACE = "urn:oid:2.16.840.1.113883.6.238"
BCP47 = "urn:ietf:bcp:47"

MRN_SYSTEM = "http://hospital.example.org/mrn"
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
DL_SYSTEM = "urn:oid:2.16.840.1.113883.4.3.25"
ACCESSION_SYSTEM = "http://hospital.example.org/accession"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
DICOM_UID_SYSTEM = "urn:dicom:uid"


@dataclass(frozen=True)
class Code:
    """One coding: the (system, code, display) triple every table row carries."""

    system: str
    code: str
    display: str

    def coding(self) -> dict:
        """FHIR Coding dict, so builders never spell the keys by hand."""
        return {"system": self.system, "code": self.code, "display": self.display}

    def concept(self, text: str | None = None) -> dict:
        """FHIR CodeableConcept with a single coding and a text."""
        return {"coding": [self.coding()], "text": text or self.display}


def sct(code: str, display: str) -> Code:
    """SNOMED CT shorthand, because most tables below are SNOMED."""
    return Code(SNOMED, code, display)


def loinc(code: str, display: str) -> Code:
    """LOINC shorthand."""
    return Code(LOINC, code, display)


def rx(code: str, display: str) -> Code:
    """RxNorm shorthand."""
    return Code(RXNORM, code, display)


# --------------------------------------------------------------------------- meds


@dataclass(frozen=True)
class Med:
    """A prescribable drug with the sig a clinician would write for it."""

    code: Code
    short: str  # how notes mention it
    sig: str
    chronic: bool = True


MEDS: dict[str, Med] = {
    "lisinopril": Med(rx("314076", "lisinopril 10 MG Oral Tablet"), "lisinopril 10 mg daily",
                      "Take 1 tablet (10 mg) by mouth once daily."),
    "amlodipine": Med(rx("197361", "amlodipine 5 MG Oral Tablet"), "amlodipine 5 mg daily",
                      "Take 1 tablet (5 mg) by mouth once daily."),
    "metformin": Med(rx("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"),
                     "metformin ER 500 mg twice daily",
                     "Take 1 tablet (500 mg) by mouth twice daily with meals."),
    "atorvastatin": Med(rx("617312", "atorvastatin 10 MG Oral Tablet"), "atorvastatin 10 mg nightly",
                        "Take 1 tablet (10 mg) by mouth at bedtime."),
    "albuterol": Med(rx("745752", "albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
                     "albuterol inhaler as needed",
                     "Inhale 2 puffs every 4 to 6 hours as needed for wheezing or shortness of breath."),
    "fluticasone": Med(rx("895994", "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler"),
                       "fluticasone inhaler twice daily", "Inhale 2 puffs twice daily. Rinse mouth after use."),
    "apixaban": Med(rx("1364430", "apixaban 5 MG Oral Tablet"), "apixaban 5 mg twice daily",
                    "Take 1 tablet (5 mg) by mouth twice daily."),
    "tamoxifen": Med(rx("198240", "tamoxifen 10 MG Oral Tablet"), "tamoxifen 10 mg twice daily",
                     "Take 1 tablet (10 mg) by mouth twice daily."),
    "sumatriptan": Med(rx("313163", "sumatriptan 50 MG Oral Tablet"), "sumatriptan 50 mg as needed",
                       "Take 1 tablet (50 mg) at migraine onset; may repeat once after 2 hours."),
    "acetaminophen": Med(rx("313782", "acetaminophen 325 MG Oral Tablet"), "acetaminophen 650 mg as needed",
                         "Take 2 tablets (650 mg) by mouth every 6 hours as needed for pain."),
    "amoxicillin_clavulanate": Med(rx("562251", "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet"),
                                   "amoxicillin-clavulanate for 7 days",
                                   "Take 1 tablet by mouth every 8 hours for 7 days.", chronic=False),
    "azithromycin": Med(rx("308460", "azithromycin 250 MG Oral Tablet"), "azithromycin for 5 days",
                        "Take 2 tablets on day 1, then 1 tablet daily on days 2 to 5.", chronic=False),
}

# ---------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class ConditionDef:
    """A condition the simulator can give a patient, with what follows from it.

    prevalence is the base probability for an adult; min_age / sex restrict who
    can have it; meds, procedures and imaging are what a patient with it gets, so
    the record stays internally consistent.
    """

    key: str
    codes: tuple[Code, ...]  # first is the usual one; alternates give coding variety
    label: str  # how a clinician writes it in a note
    prevalence: float
    min_age: int = 18
    sex: str | None = None
    chronic: bool = True
    meds: tuple[str, ...] = ()
    procedures: tuple[Code, ...] = ()
    imaging: tuple[str, ...] = ()


CONDITIONS: dict[str, ConditionDef] = {c.key: c for c in (
    ConditionDef("hypertension", (sct("59621000", "Essential hypertension (disorder)"),
                                  sct("38341003", "Hypertensive disorder, systemic arterial (disorder)")),
                 "essential hypertension", 0.30, min_age=25, meds=("lisinopril",),
                 procedures=(sct("29303009", "Electrocardiographic procedure (procedure)"),)),
    ConditionDef("diabetes", (sct("44054006", "Diabetes mellitus type 2 (disorder)"),),
                 "type 2 diabetes mellitus", 0.10, min_age=25, meds=("metformin",),
                 procedures=(sct("401191002", "Foot care assessment (regime/therapy)"),)),
    ConditionDef("hyperlipidemia", (sct("55822004", "Hyperlipidemia (disorder)"),),
                 "hyperlipidemia", 0.22, min_age=30, meds=("atorvastatin",)),
    ConditionDef("asthma", (sct("195967001", "Asthma (disorder)"),), "asthma", 0.09,
                 meds=("albuterol", "fluticasone"),
                 procedures=(sct("127783003", "Spirometry (procedure)"),), imaging=("CR_CHEST",)),
    ConditionDef("copd", (sct("13645005", "Chronic obstructive lung disease (disorder)"),),
                 "chronic obstructive pulmonary disease", 0.09, min_age=45, meds=("albuterol",),
                 procedures=(sct("127783003", "Spirometry (procedure)"),), imaging=("CT_CHEST", "CR_CHEST")),
    ConditionDef("ckd", (sct("431855005", "Chronic kidney disease stage 1 (disorder)"),
                         sct("431856006", "Chronic kidney disease stage 2 (disorder)"),
                         sct("433144002", "Chronic kidney disease stage 3 (disorder)"),
                         sct("431857002", "Chronic kidney disease stage 4 (disorder)")),
                 "chronic kidney disease", 0.07, min_age=40, meds=("lisinopril",), imaging=("US_ABDOMEN",)),
    ConditionDef("afib", (sct("49436004", "Atrial fibrillation (disorder)"),), "atrial fibrillation",
                 0.06, min_age=55, meds=("apixaban",),
                 procedures=(sct("29303009", "Electrocardiographic procedure (procedure)"),)),
    ConditionDef("breast_cancer", (sct("254837009", "Malignant neoplasm of breast (disorder)"),),
                 "breast cancer", 0.07, min_age=35, sex="female", meds=("tamoxifen",),
                 procedures=(sct("392021009", "Lumpectomy of breast (procedure)"),),
                 imaging=("MG_BREAST", "CT_CHEST")),
    ConditionDef("pneumonia", (sct("233604007", "Pneumonia (disorder)"),), "community-acquired pneumonia",
                 0.10, chronic=False, meds=("amoxicillin_clavulanate",), imaging=("CR_CHEST", "CT_CHEST")),
    ConditionDef("migraine", (sct("37796009", "Migraine (disorder)"),), "migraine", 0.10,
                 meds=("sumatriptan",), imaging=("MR_BRAIN",)),
    ConditionDef("obesity", (sct("162864005", "Body mass index 30+ - obesity (finding)"),), "obesity",
                 0.22, imaging=("US_ABDOMEN",)),
    ConditionDef("osteoarthritis", (sct("396275006", "Osteoarthritis (disorder)"),), "osteoarthritis",
                 0.14, min_age=45, meds=("acetaminophen",),
                 procedures=(sct("91251008", "Physical therapy procedure (regime/therapy)"),)),
)}

# eGFR range (mL/min/1.73m2) that goes with each CKD stage code, so labs match the coded stage
CKD_STAGE_EGFR = {"431855005": (90, 105), "431856006": (62, 88), "433144002": (32, 58), "431857002": (17, 29)}
CKD_STAGE_WEIGHTS = {"431855005": 20, "431856006": 25, "433144002": 40, "431857002": 15}

MED_RECONCILIATION = sct("430193006", "Medication Reconciliation (procedure)")
DEPRESSION_SCREEN = sct("171207006", "Depression screening (procedure)")

# ---------------------------------------------------------------------- encounters

ENCOUNTER_CLASS = {
    "AMB": Code(ACT_CODE, "AMB", "ambulatory"),
    "EMER": Code(ACT_CODE, "EMER", "emergency"),
    "IMP": Code(ACT_CODE, "IMP", "inpatient encounter"),
}
ENCOUNTER_TYPES = {
    "checkup": sct("185349003", "Encounter for check up (procedure)"),
    "followup": sct("390906007", "Follow-up encounter (procedure)"),
    "problem": sct("185347001", "Encounter for problem (procedure)"),
    "emergency": sct("50849002", "Emergency room admission (procedure)"),
    "admission": sct("32485007", "Hospital admission (procedure)"),
}
ORGANIZATIONS = (
    "Riverside General Hospital",
    "Lakeview Medical Center",
    "St. Brendan Community Hospital",
)
SPECIALTIES = ("Internal Medicine", "Family Medicine", "Emergency Medicine", "Hospital Medicine",
               "Cardiology", "Pulmonology", "Oncology", "Neurology", "Radiology")

# -------------------------------------------------------------------- observations


@dataclass(frozen=True)
class ObsDef:
    """A measurable quantity: LOINC code, UCUM unit, display unit, normal range."""

    code: Code
    unit: str
    category: str
    low: float | None = None
    high: float | None = None
    decimals: int = 1
    short: str = ""


def _obs(code: str, display: str, unit: str, category: str, low=None, high=None, decimals=1, short=""):
    return ObsDef(loinc(code, display), unit, category, low, high, decimals, short)


VITALS = "vital-signs"
LAB = "laboratory"
SOCIAL = "social-history"

BP_PANEL = loinc("85354-9", "Blood pressure panel with all children optional")
OBS: dict[str, ObsDef] = {
    "systolic": _obs("8480-6", "Systolic blood pressure", "mm[Hg]", VITALS, 90, 129, 0, "systolic BP"),
    "diastolic": _obs("8462-4", "Diastolic blood pressure", "mm[Hg]", VITALS, 60, 84, 0, "diastolic BP"),
    "heart_rate": _obs("8867-4", "Heart rate", "/min", VITALS, 60, 100, 0, "HR"),
    "resp_rate": _obs("9279-1", "Respiratory rate", "/min", VITALS, 12, 20, 0, "RR"),
    "temperature": _obs("8310-5", "Body temperature", "Cel", VITALS, 36.1, 37.5, 1, "Temp"),
    "weight": _obs("29463-7", "Body weight", "kg", VITALS, None, None, 1, "Weight"),
    "height": _obs("8302-2", "Body height", "cm", VITALS, None, None, 1, "Height"),
    "bmi": _obs("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", VITALS, 18.5, 24.9, 1, "BMI"),
    "glucose": _obs("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", LAB, 70, 99, 0, "glucose"),
    "hba1c": _obs("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", LAB, 4.0, 5.6, 1, "HbA1c"),
    "cholesterol": _obs("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", LAB, 0, 199, 0,
                        "total cholesterol"),
    "ldl": _obs("18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay", "mg/dL",
                LAB, 0, 129, 0, "LDL"),
    "hdl": _obs("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", LAB, 40, 80, 0, "HDL"),
    "creatinine": _obs("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", LAB, 0.6, 1.2, 2,
                       "creatinine"),
    "egfr": _obs("33914-3", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or "
                 "Plasma by Creatinine-based formula (MDRD)", "mL/min/{1.73_m2}", LAB, 60, None, 0, "eGFR"),
    "hemoglobin": _obs("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", LAB, 12.0, 17.5, 1, "hemoglobin"),
}
UNIT_TEXT = {"mm[Hg]": "mmHg", "/min": "/min", "Cel": "C", "kg/m2": "kg/m2", "mL/min/{1.73_m2}": "mL/min/1.73m2"}
BASIC_LABS = ("glucose", "creatinine", "egfr", "hemoglobin")
LIPID_LABS = ("cholesterol", "ldl", "hdl")

SMOKING_STATUS = loinc("72166-2", "Tobacco smoking status")
SMOKING_VALUES = {
    "never": sct("266919005", "Never smoked tobacco (finding)"),
    "former": sct("8517006", "Ex-smoker (finding)"),
    "current": sct("449868002", "Smokes tobacco daily (finding)"),
}
SMOKING_TEXT = {"never": "Never smoker", "former": "Former smoker", "current": "Current every-day smoker"}

# ------------------------------------------------------------------- immunizations

VACCINES = {
    "influenza": Code(CVX, "140", "Influenza, seasonal, injectable, preservative free"),
    "covid": Code(CVX, "208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, "
                               "30 mcg/0.3mL dose"),
    "td": Code(CVX, "113", "Td (adult) preservative free"),
    "pneumococcal": Code(CVX, "33", "pneumococcal polysaccharide vaccine, 23 valent"),
}

# ----------------------------------------------------------------------- allergies


@dataclass(frozen=True)
class AllergyDef:
    """An allergy with its FHIR category, criticality and typical reaction."""

    key: str
    code: Code
    category: str
    criticality: str
    reaction: Code
    label: str


ALLERGIES = (
    AllergyDef("penicillin", sct("764146007", "Penicillin (substance)"), "medication", "high",
               sct("247472004", "Wheal (finding)"), "penicillin (hives)"),
    AllergyDef("peanut", sct("762952008", "Peanut (substance)"), "food", "high",
               sct("39579001", "Anaphylaxis (disorder)"), "peanuts (anaphylaxis)"),
    AllergyDef("latex", sct("111088007", "Latex (substance)"), "environment", "low",
               sct("271807003", "Eruption of skin (disorder)"), "latex (rash)"),
    AllergyDef("sulfonamide", sct("387406002", "Sulfonamide (substance)"), "medication", "low",
               sct("271807003", "Eruption of skin (disorder)"), "sulfa drugs (rash)"),
)

# ------------------------------------------------------------------------- imaging


@dataclass(frozen=True)
class ImagingDef:
    """One kind of imaging exam and everything that is fixed about it.

    The DICOM SOP class, the FHIR procedure code, the LOINC code of the
    DiagnosticReport and the series a scanner typically produces all belong
    together, so they live in one row.
    """

    key: str
    modality: str
    modality_display: str
    sop_class_uid: str
    procedure: Code
    report_code: Code
    body_part: str  # DICOM BodyPartExamined
    body_site: Code
    description: str  # StudyDescription
    series: tuple[str, ...]  # SeriesDescription choices
    devices: tuple[tuple[str, str], ...]  # (Manufacturer, ManufacturerModelName)
    normal_findings: tuple[str, ...]
    normal_impression: str
    technique: str
    # condition key -> (finding, impression, conclusion Code[, index of the normal finding it replaces])
    abnormal: dict = field(default_factory=dict)


NORMAL_RESULT = sct("17621005", "Normal (qualifier value)")

IMAGING: dict[str, ImagingDef] = {d.key: d for d in (
    ImagingDef(
        "CT_CHEST", "CT", "Computed Tomography", "1.2.840.10008.5.1.4.1.1.2",
        sct("169069000", "Computed tomography of chest (procedure)"), loinc("24627-2", "CT Chest"),
        "CHEST", sct("51185008", "Thoracic structure (body structure)"), "CT CHEST WITHOUT CONTRAST",
        ("Axial 5.0 mm Soft Tissue", "Axial 1.25 mm Lung", "Coronal MPR 3.0 mm"),
        (("SIEMENS", "SOMATOM Definition AS"), ("GE MEDICAL SYSTEMS", "Revolution CT")),
        ("The lungs are clear without focal consolidation, mass or suspicious nodule.",
         "No pleural effusion or pneumothorax.",
         "The heart is normal in size. No pericardial effusion.",
         "No mediastinal, hilar or axillary lymphadenopathy.",
         "The visualized upper abdomen is unremarkable. No acute osseous abnormality."),
        "No acute cardiopulmonary abnormality.",
        "Helical CT images of the chest were obtained without intravenous contrast with multiplanar "
        "reformations.",
        {
            "copd": ("There is moderate centrilobular emphysema with upper lobe predominance and mild "
                     "bronchial wall thickening.",
                     "Moderate centrilobular emphysema. No acute consolidation.",
                     sct("87433001", "Pulmonary emphysema (disorder)")),
            "pneumonia": ("There is patchy consolidation in the right lower lobe with air bronchograms.",
                          "Right lower lobe consolidation compatible with pneumonia.",
                          sct("233604007", "Pneumonia (disorder)")),
            "breast_cancer": ("Postsurgical changes in the breast. No pulmonary nodules and no thoracic "
                              "lymphadenopathy to suggest metastatic disease.",
                              "No evidence of thoracic metastatic disease.",
                              sct("254837009", "Malignant neoplasm of breast (disorder)")),
        },
    ),
    ImagingDef(
        "CR_CHEST", "CR", "Computed Radiography", "1.2.840.10008.5.1.4.1.1.1",
        sct("399208008", "Plain chest X-ray (procedure)"), loinc("36643-5", "XR Chest 2 Views"),
        "CHEST", sct("51185008", "Thoracic structure (body structure)"), "XR CHEST PA AND LATERAL",
        ("PA", "Lateral"),
        (("FUJIFILM Corporation", "FCR Capsula XLII"), ("Carestream Health", "DRX-Evolution")),
        ("The lungs are clear. No focal airspace opacity.",
         "The cardiomediastinal silhouette is within normal limits.",
         "No pleural effusion or pneumothorax.",
         "The osseous structures are intact."),
        "No acute cardiopulmonary process.",
        "Frontal and lateral radiographs of the chest.",
        {
            "pneumonia": ("There is a focal airspace opacity in the right lower lobe with silhouetting of the "
                          "right hemidiaphragm.",
                          "Right lower lobe airspace disease consistent with pneumonia. Recommend follow-up "
                          "radiograph in 6 to 8 weeks to document resolution.",
                          sct("233604007", "Pneumonia (disorder)")),
            "copd": ("The lungs are hyperinflated with flattening of the hemidiaphragms.",
                     "Hyperinflation consistent with chronic obstructive pulmonary disease. No acute process.",
                     sct("13645005", "Chronic obstructive lung disease (disorder)")),
            "asthma": ("Mild peribronchial cuffing. No focal consolidation.",
                       "Mild peribronchial thickening, which can be seen with reactive airways disease.",
                       sct("195967001", "Asthma (disorder)")),
        },
    ),
    ImagingDef(
        "MR_BRAIN", "MR", "Magnetic Resonance", "1.2.840.10008.5.1.4.1.1.4",
        sct("816077007", "Magnetic resonance imaging of brain (procedure)"), loinc("24590-2", "MR Brain"),
        "BRAIN", sct("12738006", "Brain structure (body structure)"), "MRI BRAIN WITHOUT CONTRAST",
        ("AX T2 FSE", "SAG T1", "AX FLAIR", "AX DWI"),
        (("SIEMENS", "MAGNETOM Skyra"), ("GE MEDICAL SYSTEMS", "SIGNA Artist")),
        ("No acute infarct on diffusion-weighted imaging. No intracranial hemorrhage.",
         "The ventricles and sulci are normal in size for age. No midline shift or mass effect.",
         "Normal flow voids are present in the major intracranial vessels.",
         "The paranasal sinuses and mastoid air cells are clear."),
        "No acute intracranial abnormality.",
        "Multiplanar multisequence MR images of the brain were obtained without intravenous contrast.",
        {
            "migraine": ("A few scattered punctate T2/FLAIR hyperintensities in the frontal subcortical white "
                         "matter, nonspecific and commonly seen in patients with migraine.",
                         "No acute intracranial abnormality. Few nonspecific white matter hyperintensities, "
                         "which can be seen with migraine.",
                         sct("37796009", "Migraine (disorder)")),
        },
    ),
    ImagingDef(
        "US_ABDOMEN", "US", "Ultrasound", "1.2.840.10008.5.1.4.1.1.6.1",
        sct("45036003", "Ultrasonography of abdomen (procedure)"), loinc("24558-9", "US Abdomen"),
        "ABDOMEN", sct("113345001", "Abdominal structure (body structure)"), "US ABDOMEN COMPLETE",
        ("Liver and Gallbladder", "Kidneys", "Pancreas and Spleen"),
        (("Philips", "EPIQ 7"), ("GE Healthcare", "LOGIQ E10")),
        ("The liver is normal in size and echotexture without focal lesion.",
         "The gallbladder is without stones or wall thickening. The common bile duct is not dilated.",
         "Both kidneys are normal in size and echogenicity without hydronephrosis.",
         "The pancreas and spleen are unremarkable. No ascites."),
        "Normal abdominal ultrasound.",
        "Real-time grayscale and color Doppler sonography of the abdomen.",
        {
            "ckd": ("Both kidneys are small with increased cortical echogenicity and cortical thinning. "
                    "No hydronephrosis.",
                    "Echogenic small kidneys consistent with medical renal disease.",
                    sct("709044004", "Chronic kidney disease (disorder)"), 2),
            "obesity": ("The liver is enlarged and diffusely echogenic with posterior attenuation.",
                        "Hepatomegaly with diffuse hepatic steatosis.",
                        sct("197321007", "Steatosis of liver (disorder)")),
        },
    ),
    ImagingDef(
        "MG_BREAST", "MG", "Mammography", "1.2.840.10008.5.1.4.1.1.1.2",
        sct("71651007", "Mammography (procedure)"), loinc("24606-6", "Mammogram"),
        "BREAST", sct("76752008", "Breast structure (body structure)"), "MAMMOGRAM BILATERAL",
        ("L CC", "L MLO", "R CC", "R MLO"),
        (("HOLOGIC, Inc.", "Selenia Dimensions"), ("GE Healthcare", "Senographe Pristina")),
        ("The breasts are heterogeneously dense, which may obscure small masses.",
         "No suspicious mass, architectural distortion or suspicious calcifications.",
         "The skin and nipples are unremarkable. No axillary adenopathy."),
        "No mammographic evidence of malignancy. BI-RADS 1: Negative. Routine annual screening recommended.",
        "Standard craniocaudal and mediolateral oblique views of both breasts with tomosynthesis.",
        {
            "breast_cancer": ("There is an irregular spiculated mass with associated pleomorphic "
                              "calcifications in the upper outer quadrant.",
                              "Irregular spiculated mass highly suggestive of malignancy. BI-RADS 5. "
                              "Tissue sampling recommended.",
                              sct("254837009", "Malignant neoplasm of breast (disorder)"), 1),
        },
    ),
)}

DEFAULT_IMAGING = ("CR_CHEST", "US_ABDOMEN", "CT_CHEST", "MR_BRAIN")

# --------------------------------------------------------------------------- notes

NOTE_TYPES = {
    "progress": loinc("11506-3", "Progress note"),
    "discharge": loinc("18842-5", "Discharge summary"),
    "hp": loinc("34117-2", "History and physical note"),
}

# what a patient reports for a given condition, used in chief complaints and HPI
COMPLAINTS = {
    "hypertension": "elevated home blood pressure readings",
    "diabetes": "follow-up of blood sugars",
    "hyperlipidemia": "cholesterol follow-up",
    "asthma": "intermittent wheezing and chest tightness",
    "copd": "worsening shortness of breath on exertion",
    "ckd": "follow-up of kidney function",
    "afib": "palpitations",
    "breast_cancer": "follow-up of breast cancer on endocrine therapy",
    "pneumonia": "fever, productive cough and shortness of breath",
    "migraine": "recurrent throbbing headaches with photophobia",
    "obesity": "weight management",
    "osteoarthritis": "knee pain that is worse with activity",
}
HPI_DETAIL = {
    "hypertension": "Home blood pressure log shows readings in the {bp_word} range. Denies chest pain, "
                    "headache or vision changes.",
    "diabetes": "Reports {dm_word}. Checks fingersticks {fs_freq}. Denies polyuria, hypoglycemic episodes or "
                "foot ulcers.",
    "hyperlipidemia": "Tolerating statin therapy without myalgias.",
    "asthma": "Uses rescue inhaler about {puffs} times per week, more with cold air and exercise.",
    "copd": "Dyspnea after one flight of stairs, chronic morning cough with clear sputum.",
    "ckd": "No edema, no change in urine output. Avoiding NSAIDs as instructed.",
    "afib": "Occasional palpitations, no syncope. Adherent to anticoagulation without bleeding.",
    "breast_cancer": "Status post lumpectomy, now on tamoxifen with mild hot flashes. No new breast lumps.",
    "pneumonia": "Three days of fever to 38.9 C, cough productive of yellow sputum and pleuritic chest pain.",
    "migraine": "Headaches occur {mig_freq} times per month, relieved by sumatriptan and rest in a dark room.",
    "obesity": "Interested in dietary changes; walks about {walk} minutes per day.",
    "osteoarthritis": "Bilateral knee pain with morning stiffness under 30 minutes, improved with "
                      "acetaminophen and physical therapy.",
}
PLAN = {
    "hypertension": "{label}, {bp_control}. BP today {bp}. Continue {meds}. Low-sodium diet, recheck in 3 months.",
    "diabetes": "{label}, {dm_control} (HbA1c {a1c}). Continue {meds}. {dm_plan}",
    "hyperlipidemia": "{label}. LDL {ldl}. Continue {meds}; repeat lipid panel in 12 months.",
    "asthma": "{label}, mild persistent. Continue {meds}. Reviewed inhaler technique and trigger avoidance.",
    "copd": "{label}. Continue {meds}. Smoking cessation counseled. Pulmonary rehabilitation referral.",
    "ckd": "{label}, eGFR {egfr}, creatinine {creat}. Continue {meds} for renal protection. Avoid "
           "nephrotoxins; nephrology follow-up.",
    "afib": "{label}, rate controlled. CHA2DS2-VASc reviewed. Continue {meds}.",
    "breast_cancer": "{label}, status post lumpectomy. Continue {meds}. Oncology follow-up and annual "
                     "mammography.",
    "pneumonia": "{label}. Treated with {meds}. Encourage fluids and incentive spirometry; follow-up chest "
                 "X-ray in 6 weeks.",
    "migraine": "{label}, episodic. Continue {meds}. Headache diary; limit caffeine.",
    "obesity": "{label}, BMI {bmi}. Discussed caloric restriction and 150 minutes of weekly exercise.",
    "osteoarthritis": "{label} of the knees. Continue {meds} and home exercise program.",
}
ROS_TEXT = ("Review of systems: Constitutional negative for weight loss or night sweats. Cardiovascular "
            "negative for chest pain. Respiratory as per HPI. Gastrointestinal negative for abdominal pain, "
            "nausea or bleeding. Neurological negative for focal weakness. All other systems reviewed and "
            "negative.")
EXAM_TEXT = ("Physical exam: General: alert, oriented, in no acute distress. HEENT: normocephalic, mucous "
             "membranes moist. Neck: supple, no lymphadenopathy. Lungs: {lung_exam}. Heart: {heart_exam}. "
             "Abdomen: soft, non-tender, non-distended. Extremities: no edema. Skin: warm and dry.")
FAMILY_HISTORY = ("Family history: Mother with {mother_hx}. Father with {father_hx}. No family history of "
                  "sudden cardiac death.")
FAMILY_CONDITIONS = ("hypertension", "type 2 diabetes", "coronary artery disease", "breast cancer",
                     "stroke", "osteoarthritis", "colon cancer", "no significant medical history")
EDUCATION_TEXT = ("Patient education: Discussed the diagnosis, the treatment plan and warning signs that "
                  "should prompt an urgent visit. Patient verbalized understanding and agrees with the plan. "
                  "Questions were answered.")

"""Render a simulated patient as FHIR R4 resources and write them.

Two landing formats, as hospitals deliver them:

* one Synthea-style `transaction` Bundle per patient (`fhir/patient-0001.json`),
  entries carrying `fullUrl: urn:uuid:<id>` and `request: POST <type>`, with
  in-bundle references written as `urn:uuid:<id>`;
* FHIR Bulk Data export NDJSON (`fhir/bulk/<ResourceType>.ndjson`), one resource
  per line, references written as `<ResourceType>/<id>`.

Both carry the same resources with the same ids.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path

import orjson

from medlake.generate import clinical as cl
from medlake.generate import model as m
from medlake.generate.util import fhir_date, fhir_datetime, last_updated

INTERPRETATION = {"H": "High", "L": "Low", "N": "Normal"}
MARITAL_DISPLAY = {"M": "Married", "S": "Never Married", "D": "Divorced", "W": "Widowed"}
CLINICAL_NOTE = {"coding": [{"system": cl.DOC_CATEGORY, "code": "clinical-note", "display": "Clinical Note"}]}


def ref(resource_id: str) -> dict:
    """An in-bundle reference (resolved against entry fullUrl)."""
    return {"reference": f"urn:uuid:{resource_id}"}


def _clinician(c: m.Clinician) -> dict:
    """Reference to a clinician by display name and NPI (no Practitioner resource is emitted)."""
    return {"identifier": {"system": cl.NPI_SYSTEM, "value": c.npi}, "display": c.display}


def _status(system: str, code: str) -> dict:
    """A status CodeableConcept (clinicalStatus, verificationStatus)."""
    return {"coding": [{"system": system, "code": code, "display": code.capitalize()}]}


def _identifier_type(code: str, display: str) -> dict:
    """identifier.type coded with HL7 v2 table 0203."""
    return {"coding": [{"system": cl.V2_0203, "code": code, "display": display}], "text": display}


def accession_identifier(accession: str) -> dict:
    """The accession number as it appears on ImagingStudy and DiagnosticReport."""
    return {"use": "usual", "type": _identifier_type("ACSN", "Accession ID"),
            "system": cl.ACCESSION_SYSTEM, "value": accession}


class _Stamp:
    """meta.lastUpdated values from a dedicated rng, so rendering never disturbs the simulation."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def meta(self, dt) -> dict:
        """A meta element stamped shortly after the recorded event."""
        return {"lastUpdated": last_updated(self.rng, dt)}


# ------------------------------------------------------------------ resources


def patient_resource(p: m.Patient, stamp: _Stamp) -> dict:
    """Patient with MRN/SSN/DL identifiers and US Core race/ethnicity extensions (Synthea style)."""
    identifiers = [
        {"use": "usual", "type": _identifier_type("MR", "Medical Record Number"),
         "system": cl.MRN_SYSTEM, "value": p.mrn},
        {"type": _identifier_type("SS", "Social Security Number"), "system": cl.SSN_SYSTEM, "value": p.ssn},
    ]
    if p.drivers_license:
        identifiers.append({"type": _identifier_type("DL", "Driver's license number"),
                            "system": cl.DL_SYSTEM, "value": p.drivers_license})
    resource = {
        "resourceType": "Patient", "id": p.id,
        "meta": stamp.meta(p.encounters[-1].end),
        "extension": _patient_extensions(p),
        "identifier": identifiers,
        "name": [{"use": "official", "family": p.family, "given": [p.given], "prefix": [p.prefix]}],
        "telecom": [{"system": "phone", "value": p.phone, "use": "home"},
                    {"system": "email", "value": p.email, "use": "home"}],
        "gender": p.gender,
        "birthDate": fhir_date(p.birth_date),
    }
    if p.deceased:
        resource["deceasedDateTime"] = fhir_datetime(p.deceased)
    resource.update({
        "address": [{"use": "home", "line": [p.street], "city": p.city, "state": p.state,
                     "postalCode": p.postal_code, "country": "US"}],
        "maritalStatus": {"coding": [{"system": cl.MARITAL, "code": p.marital,
                                      "display": MARITAL_DISPLAY[p.marital]}],
                          "text": MARITAL_DISPLAY[p.marital]},
        "multipleBirthBoolean": False,
        "communication": [{"language": {"coding": [{"system": cl.BCP47, "code": p.language[0],
                                                    "display": p.language[1]}], "text": p.language[1]}}],
    })
    return resource


def _patient_extensions(p: m.Patient) -> list[dict]:
    """US Core race, ethnicity and birth sex plus mother's maiden name, as Synthea writes them."""
    def omb(url: str, code: tuple[str, str]) -> dict:
        return {"url": url, "extension": [
            {"url": "ombCategory", "valueCoding": {"system": cl.OMB_RACE, "code": code[0], "display": code[1]}},
            {"url": "text", "valueString": code[1]}]}
    return [
        omb("http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", p.race),
        omb("http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity", p.ethnicity),
        {"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
         "valueString": p.mothers_maiden_name},
        {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
         "valueCode": "M" if p.gender == "male" else "F"},
    ]


def encounter_resource(p: m.Patient, e: m.Encounter, stamp: _Stamp) -> dict:
    """Encounter with class, SNOMED type, period, attending and service provider."""
    period = {"start": fhir_datetime(e.start), "end": fhir_datetime(e.end)}
    resource = {
        "resourceType": "Encounter", "id": e.id, "meta": stamp.meta(e.end), "status": "finished",
        "class": cl.ENCOUNTER_CLASS[e.cls].coding(),
        "type": [cl.ENCOUNTER_TYPES[e.type_key].concept()],
        "subject": ref(p.id),
        "participant": [{"type": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PPRF",
            "display": "primary performer"}], "text": "primary performer"}],
            "period": period, "individual": _clinician(e.clinician)}],
        "period": period,
    }
    if e.reason:
        resource["reasonReference"] = [ref(e.reason.id)]
    resource["serviceProvider"] = {"display": e.organization}
    return resource


def condition_resource(p: m.Patient, c: m.Condition, stamp: _Stamp) -> dict:
    """Condition with clinical/verification status, onset and (for resolved ones) abatement."""
    resource = {
        "resourceType": "Condition", "id": c.id, "meta": stamp.meta(c.recorded),
        "clinicalStatus": _status(cl.COND_CLINICAL, "resolved" if c.abatement else "active"),
        "verificationStatus": _status(cl.COND_VERIFICATION, "confirmed"),
        "category": [{"coding": [{"system": cl.COND_CATEGORY, "code": "encounter-diagnosis",
                                  "display": "Encounter Diagnosis"}]}],
        "code": c.code.concept(),
        "subject": ref(p.id), "encounter": ref(c.encounter.id),
        "onsetDateTime": fhir_datetime(c.onset),
    }
    if c.abatement:
        resource["abatementDateTime"] = fhir_datetime(c.abatement)
    resource["recordedDate"] = fhir_datetime(c.recorded)
    return resource


def _quantity(d: cl.ObsDef, value: float) -> dict:
    """valueQuantity in UCUM."""
    return {"value": value, "unit": d.unit, "system": cl.UCUM, "code": d.unit}


def _interpretation(d: cl.ObsDef, value: float) -> dict | None:
    """H/L/N flag against the reference range, where one exists."""
    if d.low is None and d.high is None:
        return None
    code = "H" if d.high is not None and value > d.high else "L" if d.low is not None and value < d.low else "N"
    return {"coding": [{"system": cl.OBS_INTERPRETATION, "code": code, "display": INTERPRETATION[code]}]}


def observation_resource(p: m.Patient, o: m.Observation, stamp: _Stamp) -> dict:
    """Observation: quantity, BP panel with components, or coded (smoking status)."""
    display = {"vital-signs": "Vital signs", "laboratory": "Laboratory", "social-history": "Social History"}
    resource = {
        "resourceType": "Observation", "id": o.id, "meta": stamp.meta(o.effective), "status": "final",
        "category": [{"coding": [{"system": cl.OBS_CATEGORY, "code": o.category,
                                  "display": display[o.category]}]}],
        "code": o.code.concept(), "subject": ref(p.id), "encounter": ref(o.encounter.id),
        "effectiveDateTime": fhir_datetime(o.effective), "issued": fhir_datetime(o.effective),
    }
    if o.components:
        resource["component"] = [{"code": d.code.concept(), "valueQuantity": _quantity(d, v),
                                  **_interp_field(d, v)} for d, v in o.components]
    elif o.value_code:
        resource["valueCodeableConcept"] = o.value_code.concept()
    else:
        resource["valueQuantity"] = _quantity(o.definition, o.value)
        resource.update(_interp_field(o.definition, o.value))
        if o.category == cl.LAB and (o.definition.low is not None or o.definition.high is not None):
            resource["referenceRange"] = [_range(o.definition)]
    return resource


def _interp_field(d: cl.ObsDef, value: float) -> dict:
    """{'interpretation': [...]} or {} when there is no reference range."""
    interp = _interpretation(d, value)
    return {"interpretation": [interp]} if interp else {}


def _range(d: cl.ObsDef) -> dict:
    """referenceRange low/high in the observation's unit."""
    out = {}
    if d.low is not None:
        out["low"] = _quantity(d, d.low)
    if d.high is not None:
        out["high"] = _quantity(d, d.high)
    return out


def medication_request_resource(p: m.Patient, mr: m.MedicationRequest, stamp: _Stamp) -> dict:
    """MedicationRequest (RxNorm) with the sig and the condition it treats."""
    return {
        "resourceType": "MedicationRequest", "id": mr.id, "meta": stamp.meta(mr.authored),
        "status": mr.status, "intent": "order",
        "medicationCodeableConcept": mr.med.code.concept(),
        "subject": ref(p.id), "encounter": ref(mr.encounter.id),
        "authoredOn": fhir_datetime(mr.authored), "requester": _clinician(mr.requester),
        "reasonReference": [ref(mr.reason.id)],
        "dosageInstruction": [{"sequence": 1, "text": mr.med.sig,
                               "asNeededBoolean": "as needed" in mr.med.sig}],
    }


def procedure_resource(p: m.Patient, pr: m.Procedure, stamp: _Stamp) -> dict:
    """Procedure (SNOMED) performed during an encounter."""
    resource = {
        "resourceType": "Procedure", "id": pr.id, "meta": stamp.meta(pr.end), "status": "completed",
        "code": pr.code.concept(), "subject": ref(p.id), "encounter": ref(pr.encounter.id),
        "performedPeriod": {"start": fhir_datetime(pr.start), "end": fhir_datetime(pr.end)},
    }
    if pr.reason:
        resource["reasonReference"] = [ref(pr.reason.id)]
    return resource


def immunization_resource(p: m.Patient, im: m.Immunization, stamp: _Stamp) -> dict:
    """Immunization (CVX)."""
    return {
        "resourceType": "Immunization", "id": im.id, "meta": stamp.meta(im.date), "status": "completed",
        "vaccineCode": im.code.concept(), "patient": ref(p.id), "encounter": ref(im.encounter.id),
        "occurrenceDateTime": fhir_datetime(im.date), "primarySource": True,
    }


def allergy_resource(p: m.Patient, a: m.Allergy, stamp: _Stamp) -> dict:
    """AllergyIntolerance with the typical reaction."""
    d = a.definition
    return {
        "resourceType": "AllergyIntolerance", "id": a.id, "meta": stamp.meta(a.recorded),
        "clinicalStatus": _status(cl.ALLERGY_CLINICAL, "active"),
        "verificationStatus": _status(cl.ALLERGY_VERIFICATION, "confirmed"),
        "type": "allergy", "category": [d.category], "criticality": d.criticality,
        "code": d.code.concept(), "patient": ref(p.id), "encounter": ref(a.encounter.id),
        "recordedDate": fhir_datetime(a.recorded),
        "reaction": [{"manifestation": [d.reaction.concept()],
                      "severity": "severe" if d.criticality == "high" else "mild"}],
    }


def imaging_study_resource(p: m.Patient, s: m.ImagingStudy, stamp: _Stamp) -> dict:
    """ImagingStudy whose UIDs and accession number match the DICOM files exactly."""
    d = s.definition
    modality = {"system": cl.DCM, "code": d.modality, "display": d.modality_display}
    resource = {
        "resourceType": "ImagingStudy", "id": s.id, "meta": stamp.meta(s.issued),
        "identifier": [{"system": cl.DICOM_UID_SYSTEM, "value": f"urn:oid:{s.study_uid}"},
                       accession_identifier(s.accession)],
        "status": "available", "modality": [modality],
        "subject": ref(p.id), "encounter": ref(s.encounter.id),
        "started": fhir_datetime(s.started),
        "referrer": _clinician(s.referrer), "interpreter": [_clinician(s.radiologist)],
        "numberOfSeries": len(s.series),
        "numberOfInstances": sum(len(x.instances) for x in s.series),
        "procedureCode": [d.procedure.concept()],
    }
    if s.reason:
        resource["reasonCode"] = [s.reason.code.concept()]
    resource["description"] = d.description
    resource["series"] = [{
        "uid": x.uid, "number": x.number, "modality": modality, "description": x.description,
        "numberOfInstances": len(x.instances), "bodySite": d.body_site.coding(),
        "started": fhir_datetime(x.started),
        "instance": [{"uid": i.uid, "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{d.sop_class_uid}"},
                      "number": i.number, "title": f"{x.description} image {i.number}"} for i in x.instances],
    } for x in s.series]
    return resource


def diagnostic_report_resource(p: m.Patient, s: m.ImagingStudy, stamp: _Stamp) -> dict:
    """Radiology DiagnosticReport: accession identifier, conclusion and the report text."""
    d = s.definition
    return {
        "resourceType": "DiagnosticReport", "id": s.report_id, "meta": stamp.meta(s.issued),
        "identifier": [accession_identifier(s.accession)],
        "status": "final",
        "category": [{"coding": [{"system": cl.V2_0074, "code": "RAD", "display": "Radiology"}]}],
        "code": d.report_code.concept(),
        "subject": ref(p.id), "encounter": ref(s.encounter.id),
        "effectiveDateTime": fhir_datetime(s.started), "issued": fhir_datetime(s.issued),
        "performer": [{"display": s.encounter.organization}],
        "resultsInterpreter": [_clinician(s.radiologist)],
        "imagingStudy": [ref(s.id)],
        "conclusion": s.impression,
        "conclusionCode": [s.conclusion_code.concept()],
        "presentedForm": [{"contentType": "text/plain", "data": _b64(s.report_text),
                           "title": f"{d.report_code.display} report"}],
    }


def document_reference_resource(p: m.Patient, n: m.Note, stamp: _Stamp) -> dict:
    """DocumentReference holding a clinical note as base64 text/plain."""
    return {
        "resourceType": "DocumentReference", "id": n.id, "meta": stamp.meta(n.date),
        "status": "current", "docStatus": "final",
        "type": n.code.concept(), "category": [CLINICAL_NOTE],
        "subject": ref(p.id), "date": fhir_datetime(n.date),
        "author": [_clinician(n.author)], "custodian": {"display": n.encounter.organization},
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "language": "en-US",
                                    "data": _b64(n.text), "title": n.code.display,
                                    "creation": fhir_datetime(n.date)}}],
        "context": {"encounter": [ref(n.encounter.id)],
                    "period": {"start": fhir_datetime(n.encounter.start), "end": fhir_datetime(n.encounter.end)}},
    }


def _b64(text: str) -> str:
    """Base64 of UTF-8 text, as FHIR attachments carry it."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def build_resources(p: m.Patient) -> list[dict]:
    """All of a patient's resources: the Patient first, then visit by visit (Synthea order)."""
    stamp = _Stamp(p.seed)
    out = [patient_resource(p, stamp)]
    for e in p.encounters:
        out.append(encounter_resource(p, e, stamp))
        out += [condition_resource(p, c, stamp) for c in p.conditions if c.encounter is e]
        out += [allergy_resource(p, a, stamp) for a in p.allergies if a.encounter is e]
        out += [observation_resource(p, o, stamp) for o in p.observations if o.encounter is e]
        out += [procedure_resource(p, x, stamp) for x in p.procedures if x.encounter is e]
        out += [medication_request_resource(p, x, stamp) for x in p.medications if x.encounter is e]
        out += [immunization_resource(p, x, stamp) for x in p.immunizations if x.encounter is e]
        for s in (s for s in p.imaging if s.encounter is e):
            out += [imaging_study_resource(p, s, stamp), diagnostic_report_resource(p, s, stamp)]
        out += [document_reference_resource(p, n, stamp) for n in p.notes if n.encounter is e]
    return out


# -------------------------------------------------------------------- writing


def transaction_bundle(resources: list[dict]) -> dict:
    """A Synthea-style transaction Bundle: fullUrl urn:uuid, request POST <type>."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
         "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]}


def write_bundle(path: Path, resources: list[dict]) -> None:
    """Write one compact JSON bundle (orjson output is deterministic for the same input)."""
    path.write_bytes(orjson.dumps(transaction_bundle(resources)))


def bulk_references(resource: dict, types: dict[str, str]) -> dict:
    """Rewrite urn:uuid references to `Type/id`, as a Bulk Data export writes them."""
    def walk(node):
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "reference" and isinstance(v, str) and v.startswith("urn:uuid:"):
                    rid = v[len("urn:uuid:"):]
                    out[k] = f"{types[rid]}/{rid}"
                else:
                    out[k] = walk(v)
            return out
        if isinstance(node, list):
            return [walk(x) for x in node]
        return node
    return walk(resource)


class NdjsonWriter:
    """Collects resources per type and writes `<dir>/<ResourceType>.ndjson` at the end."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.lines: dict[str, list[bytes]] = {}

    def add(self, resources: list[dict]) -> None:
        """Add one patient's resources (references resolved within that patient)."""
        types = {r["id"]: r["resourceType"] for r in resources}
        for r in resources:
            self.lines.setdefault(r["resourceType"], []).append(orjson.dumps(bulk_references(r, types)))

    def write(self) -> list[Path]:
        """Write one file per resource type, sorted by type name for a stable listing."""
        self.directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for rtype in sorted(self.lines):
            path = self.directory / f"{rtype}.ndjson"
            path.write_bytes(b"\n".join(self.lines[rtype]) + b"\n")
            paths.append(path)
        return paths

"""Free-text clinical notes and radiology reports.

Real notes are where identifiers leak: they name the patient, quote the MRN and
date of birth, the phone number and the town, the dates of the visit and the
clinician. These notes do the same on purpose, so the de-identification step
downstream has real PHI to scrub. They also state the patient's actual
conditions, medications and most recent lab values, so retrieval questions
("who has poorly controlled diabetes?") have a grounded answer.
"""

from __future__ import annotations

import random
from datetime import datetime

from medlake.generate import clinical as cl
from medlake.generate import model as m
from medlake.generate.util import note_date

MIN_WORDS, MAX_WORDS = 200, 450
REPORT_QUALITY = {
    "CT": "Automated exposure control and iterative reconstruction were used to reduce dose.",
    "MR": "Image quality is adequate without significant motion artifact.",
    "CR": "Adequate inspiration and positioning.",
    "US": "The examination was somewhat limited by overlying bowel gas.",
    "MG": "Computer-aided detection was applied. Image quality is adequate.",
}
LAB_ORDER = ("hba1c", "glucose", "creatinine", "egfr", "ldl", "hdl", "cholesterol", "hemoglobin")
SEX_WORD = {"male": ("man", "he", "his", "Male"), "female": ("woman", "she", "her", "Female")}
COURSE = {
    "pneumonia": "Chest imaging showed right lower lobe consolidation. Blood and sputum cultures were obtained "
                 "and {pronoun} was started on {antibiotic}. Fever resolved within 48 hours and oxygen "
                 "saturation improved to 96 percent on room air.",
    "copd": "Treated for an acute exacerbation of COPD with nebulized bronchodilators, a five-day course of "
            "prednisone and doxycycline. Work of breathing improved steadily.",
    "asthma": "Treated for an asthma exacerbation with nebulized albuterol and ipratropium and oral "
              "prednisone, with good response.",
    "afib": "Presented with atrial fibrillation with rapid ventricular response, rate controlled with "
            "intravenous diltiazem. Anticoagulation with apixaban was continued.",
    "ckd": "Found to have acute kidney injury on chronic kidney disease after poor oral intake, which "
           "improved with intravenous fluids and holding nephrotoxic medications.",
    None: "Evaluated for chest pain and lightheadedness. Serial ECGs and troponins were negative and "
          "telemetry showed no arrhythmia. Symptoms resolved with hydration.",
}


# ------------------------------------------------------------------ facts


def _latest_labs(p: m.Patient, until: datetime) -> dict[str, m.Observation]:
    """The most recent value of each lab up to a point in time."""
    latest: dict[str, m.Observation] = {}
    for o in p.observations:
        if o.category == cl.LAB and o.effective <= until:
            key = next(k for k, d in cl.OBS.items() if d is o.definition)
            latest[key] = o
    return latest


def _visit_vitals(p: m.Patient, enc: m.Encounter) -> dict[str, float]:
    """Vital signs measured at this visit, by OBS key."""
    values: dict[str, float] = {}
    for o in p.observations:
        if o.encounter is enc and o.category == cl.VITALS:
            if o.components:
                values.update({"systolic": o.components[0][1], "diastolic": o.components[1][1]})
            else:
                values[next(k for k, d in cl.OBS.items() if d is o.definition)] = o.value
    return values


def _fmt(o: m.Observation) -> str:
    """'HbA1c 9.4 %' the way a clinician writes a lab value."""
    d = o.definition
    return f"{d.short} {o.value} {cl.UNIT_TEXT.get(d.unit, d.unit)}"


def _current_meds(p: m.Patient, until: datetime, enc: m.Encounter) -> list[m.MedicationRequest]:
    """Chronic meds prescribed by now, plus short courses started at this visit."""
    return [mr for mr in p.medications
            if mr.authored <= until and (mr.med.chronic or mr.encounter is enc)]


def _join(items: list[str], empty: str) -> str:
    """'a, b and c' or the given empty text."""
    if not items:
        return empty
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------- sections


def _header(p: m.Patient, title: str, enc: m.Encounter, author: m.Clinician) -> str:
    """Identifying header every hospital note carries."""
    return (f"{title.upper()}\n"
            f"Patient: {p.given} {p.family}   MRN: {p.mrn}   DOB: {note_date(p.birth_date)}   "
            f"Sex: {SEX_WORD[p.gender][3]}\n"
            f"Address: {p.street}, {p.city}, {p.state} {p.postal_code}   Phone: {p.phone}\n"
            f"Visit date: {note_date(enc.start)}   Location: {enc.organization}   Attending: {author.display}")


def _hpi(p: m.Patient, enc: m.Encounter, conds: list[m.Condition], rng: random.Random) -> str:
    """History of present illness naming the patient, age and the active problems."""
    noun, pronoun, _, _ = SEX_WORD[p.gender]
    reason = enc.reason.definition.key if enc.reason else None
    why = cl.COMPLAINTS[reason] if reason else ("an annual physical examination" if enc.type_key == "checkup"
                                               else "routine follow-up")
    history = _join([c.label for c in conds if c.definition.chronic], "no significant past history")
    parts = [f"{p.given} {p.family} is {_aged(p.age_at(enc.start))} {noun} with {history} who presents "
             f"on {note_date(enc.start)} for {why}."]
    fill = {"bp_word": "150s over 90s" if _poor(p, "hypertension") else "130s over 80s",
            "dm_word": "fasting sugars in the 200s" if _poor(p, "diabetes") else "fasting sugars mostly "
            "under 130", "fs_freq": rng.choice(("daily", "twice daily", "a few times a week")),
            "puffs": rng.randint(1, 4), "mig_freq": rng.randint(2, 6), "walk": rng.choice((10, 20, 30))}
    focus = ([enc.reason] if enc.reason else []) + [c for c in conds if c is not enc.reason]
    for c in focus[:3]:
        parts.append(cl.HPI_DETAIL[c.definition.key].format(**fill))
    if p.smoking == "current":
        parts.append(f"{pronoun.capitalize()} continues to smoke about half a pack per day.")
    return "History of present illness: " + " ".join(parts)


def _aged(age: int) -> str:
    """'a 67-year-old' / 'an 82-year-old'."""
    article = "an" if str(age).startswith("8") or age in (11, 18) else "a"
    return f"{article} {age}-year-old"


def _poor(p: m.Patient, key: str) -> bool:
    """Whether this condition is poorly controlled for the patient."""
    c = p.condition(key)
    return bool(c and c.control == "poor")


def _social(p: m.Patient) -> str:
    """Social history, which also puts the patient's town into the note."""
    marital = {"M": "married", "S": "single", "D": "divorced", "W": "widowed"}[p.marital]
    return (f"Social history: {cl.SMOKING_TEXT[p.smoking]}. Lives in {p.city}, {p.state}; {marital}. "
            f"Drinks alcohol socially. Contact phone {p.phone}.")


def _vitals_line(values: dict[str, float], label: str = "Vital signs") -> str:
    """Vital signs in one line."""
    return (f"{label}: BP {values['systolic']}/{values['diastolic']} mmHg, HR {values['heart_rate']}/min, "
            f"RR {values['resp_rate']}/min, Temp {values['temperature']} C, Weight {values['weight']} kg, "
            f"BMI {values['bmi']} kg/m2.")


def _labs_line(labs: dict[str, m.Observation]) -> str:
    """Most recent labs, each with its date."""
    items = [f"{_fmt(labs[k])} ({note_date(labs[k].effective)})" for k in LAB_ORDER if k in labs]
    return "Recent labs: " + _join(items, "none on file") + "."


def _exam(p: m.Patient, enc: m.Encounter, conds: list[m.Condition]) -> str:
    """Physical exam consistent with the problems (crackles in pneumonia, irregular rhythm in AF)."""
    keys = {c.definition.key for c in conds}
    lung = ("crackles at the right base" if "pneumonia" in keys and enc.reason and
            enc.reason.definition.key == "pneumonia" else "scattered expiratory wheezes" if keys & {"asthma", "copd"}
            else "clear to auscultation bilaterally")
    heart = "irregularly irregular rhythm, no murmur" if "afib" in keys else "regular rate and rhythm, no murmur"
    return cl.EXAM_TEXT.format(lung_exam=lung, heart_exam=heart)


def _plan(p: m.Patient, conds: list[m.Condition], meds: list[m.MedicationRequest],
          labs: dict[str, m.Observation], vitals: dict[str, float]) -> list[str]:
    """Numbered assessment and plan, one item per active problem, values quoted."""
    items = []
    for c in conds[:5]:
        key = c.definition.key
        own = [mr.med.short for mr in meds
               if mr.reason is c or any(mr.med is cl.MEDS[k] for k in c.definition.meds)]
        a1c = labs.get("hba1c")
        poor_dm = bool(a1c and a1c.value >= 8.0)
        bp_high = vitals.get("systolic", 0) >= 140 or vitals.get("diastolic", 0) >= 90
        fill = {
            "label": c.label.capitalize(), "meds": _join(own, "current regimen"),
            "bp": f"{vitals.get('systolic')}/{vitals.get('diastolic')} mmHg",
            "bp_control": "not at goal" if bp_high else "at goal",
            "dm_control": "poorly controlled" if poor_dm else "well controlled",
            "a1c": f"{a1c.value} %" if a1c else "pending",
            "dm_plan": ("Intensify therapy: discussed adding a GLP-1 receptor agonist, referred to diabetes "
                        "education." if poor_dm else "Continue current regimen and annual eye exam."),
            "ldl": _fmt(labs["ldl"]).split(" ", 1)[1] if "ldl" in labs else "pending",
            "egfr": _fmt(labs["egfr"]).split(" ", 1)[1] if "egfr" in labs else "pending",
            "creat": _fmt(labs["creatinine"]).split(" ", 1)[1] if "creatinine" in labs else "pending",
            "bmi": vitals.get("bmi", "not recorded"),
        }
        items.append(cl.PLAN[key].format(**fill))
    if not items:
        items.append("Health maintenance. No chronic problems. Age-appropriate screening reviewed; continue "
                     "regular exercise and a balanced diet.")
    return [f"{i}. {text}" for i, text in enumerate(items, start=1)]


def _signature(author: m.Clinician, when: datetime) -> str:
    """Electronic signature with the clinician's name and the signing time."""
    return f"Electronically signed by {author.display}, MD ({author.specialty}) on {note_date(when)} at " \
           f"{when.strftime('%H:%M')}."


# ------------------------------------------------------------------- notes


def render_note(p: m.Patient, type_key: str, enc: m.Encounter, when: datetime, rng: random.Random) -> str:
    """Render one note of the given type for an encounter, kept within 200–450 words."""
    conds = p.active_conditions(enc.end)
    meds = _current_meds(p, when, enc)
    labs = _latest_labs(p, enc.end)
    vitals = _visit_vitals(p, enc)
    allergies = [a.definition.label for a in p.allergies if a.recorded <= when]
    ctx = dict(p=p, enc=enc, when=when, rng=rng, conds=conds, meds=meds, labs=labs, vitals=vitals,
               allergies=_join(allergies, "No known drug allergies"))
    build = {"progress": _progress, "hp": _history_physical, "discharge": _discharge}[type_key]
    core, optional, closing = build(**ctx)
    return _fit(core, optional, closing)


def _fit(core: list[str], optional: list[str], closing: list[str]) -> str:
    """Add optional sections while under the word budget, so every note is a realistic length."""
    sections = list(core)
    for extra in optional:
        if _words(sections + closing) >= MIN_WORDS and _words(sections + [extra] + closing) > MAX_WORDS:
            break
        sections.append(extra)
    text = "\n\n".join(sections + closing)
    while _words([text]) > MAX_WORDS and len(sections) > 4:
        sections.pop()
        text = "\n\n".join(sections + closing)
    return text + "\n"


def _words(parts: list[str]) -> int:
    """Word count of some sections."""
    return sum(len(s.split()) for s in parts)


def _med_lines(meds: list[m.MedicationRequest]) -> str:
    """Medication list with sigs."""
    return _join([mr.med.short for mr in meds], "None")


def _progress(p, enc, when, rng, conds, meds, labs, vitals, allergies):
    """Outpatient progress note (LOINC 11506-3)."""
    reason = enc.reason.definition.key if enc.reason else None
    complaint = cl.COMPLAINTS[reason] if reason else (
        "Annual physical examination" if enc.type_key == "checkup" else "Routine follow-up of chronic conditions")
    core = [_header(p, "Progress note", enc, enc.clinician),
            f"Chief complaint: {complaint[0].upper() + complaint[1:]}.",
            _hpi(p, enc, conds, rng),
            f"Current medications: {_med_lines(meds)}.",
            f"Allergies: {allergies}.",
            _vitals_line(vitals), _labs_line(labs),
            "Assessment and plan:\n" + "\n".join(_plan(p, conds, meds, labs, vitals))]
    optional = [_social(p), _exam(p, enc, conds), cl.ROS_TEXT, cl.EDUCATION_TEXT]
    closing = [f"Follow-up: Return to clinic in {rng.choice((3, 4, 6))} months or sooner as needed.",
               _signature(enc.clinician, when)]
    return core, optional, closing


def _history_physical(p, enc, when, rng, conds, meds, labs, vitals, allergies):
    """History and physical (LOINC 34117-2), for first visits and ED visits."""
    reason = enc.reason.definition.key if enc.reason else None
    complaint = cl.COMPLAINTS[reason] if reason else "New patient visit to establish care"
    surgical = [pr.code.display.split(" (")[0] for pr in p.procedures
                if pr.code.code == "392021009" and pr.start <= when]
    core = [_header(p, "History and physical", enc, enc.clinician),
            f"Chief complaint: {complaint[0].upper() + complaint[1:]}.",
            _hpi(p, enc, conds, rng),
            "Past medical history: " + _join([c.label for c in conds], "None") + ".",
            f"Medications: {_med_lines(meds)}.",
            f"Allergies: {allergies}.",
            _vitals_line(vitals), _labs_line(labs),
            "Assessment and plan:\n" + "\n".join(_plan(p, conds, meds, labs, vitals))]
    optional = [_social(p), _exam(p, enc, conds),
                "Past surgical history: " + _join(surgical, "None") + ".",
                cl.FAMILY_HISTORY.format(mother_hx=rng.choice(cl.FAMILY_CONDITIONS),
                                         father_hx=rng.choice(cl.FAMILY_CONDITIONS)),
                cl.ROS_TEXT]
    closing = [_signature(enc.clinician, when)]
    return core, optional, closing


def _discharge(p, enc, when, rng, conds, meds, labs, vitals, allergies):
    """Discharge summary (LOINC 18842-5) for an inpatient stay."""
    noun, pronoun, possessive, _ = SEX_WORD[p.gender]
    reason = enc.reason.definition.key if enc.reason else None
    antibiotic = next((mr.med.short for mr in meds if not mr.med.chronic), "intravenous antibiotics")
    course = COURSE.get(reason, COURSE[None]).format(pronoun=pronoun, antibiotic=antibiotic)
    admitting = enc.reason.label if enc.reason else "chest pain, rule out acute coronary syndrome"
    died = p.deceased is not None and enc is p.encounters[-1]
    outcome = (f"Condition at discharge: Patient expired on {note_date(p.deceased)}. Family was at bedside."
               if died else "Condition at discharge: Stable. Discharged home with family.")
    core = [_header(p, "Discharge summary", enc, enc.clinician),
            f"Admission date: {note_date(enc.start)}   Discharge date: {note_date(enc.end)}",
            f"Admitting diagnosis: {admitting[0].upper() + admitting[1:]}.",
            f"Hospital course: {p.prefix} {p.family} is {_aged(p.age_at(enc.start))} {noun} with "
            f"{_join([c.label for c in conds if c is not enc.reason], 'no significant history')} "
            f"admitted on {note_date(enc.start)} with {cl.COMPLAINTS.get(reason, 'chest pain')}. {course}",
            "Discharge diagnoses:\n" + "\n".join(_plan(p, conds, meds, labs, vitals)),
            f"Discharge medications: {_med_lines(meds)}.",
            f"Allergies: {allergies}.",
            _labs_line(labs), outcome]
    optional = [_vitals_line(vitals, "Admission vital signs"), _social(p), _exam(p, enc, conds), cl.EDUCATION_TEXT]
    closing = [f"Follow-up: See {p.pcp.display} within 7 days. {p.prefix} {p.family} can be reached at "
               f"{p.phone}; {possessive} address on file is {p.street}, {p.city}.",
               _signature(enc.clinician, when)]
    return core, optional, closing


# -------------------------------------------------------------- radiology


def render_radiology_report(p: m.Patient, s: m.ImagingStudy) -> str:
    """A radiology report with FINDINGS and IMPRESSION, as stored in DiagnosticReport.presentedForm."""
    d = s.definition
    noun = SEX_WORD[p.gender][0]
    history = (f"{s.reason.label}" if s.reason else
               "screening" if d.key == "MG_BREAST" else "routine evaluation")
    lines = [
        "RADIOLOGY REPORT",
        f"Patient: {p.given} {p.family}   MRN: {p.mrn}   DOB: {note_date(p.birth_date)}",
        f"Accession: {s.accession}   Exam date: {note_date(s.started)} {s.started.strftime('%H:%M')}   "
        f"Location: {s.encounter.organization}",
        f"Referring physician: {s.referrer.display}",
        f"EXAM: {d.description}",
        f"CLINICAL HISTORY: {p.age_at(s.started)}-year-old {noun}, {history}.",
        f"TECHNIQUE: {d.technique} {REPORT_QUALITY[d.modality]}",
        "COMPARISON: None available in the PACS.",
        "FINDINGS:",
        *s.findings,
        "IMPRESSION:",
        f"1. {s.impression}",
        "Critical results: None. Findings were made available to the referring clinician through the "
        "electronic health record.",
        "ATTESTATION: I have personally reviewed the images and agree with the report above.",
        f"Electronically signed by {s.radiologist.display}, MD (Radiology) on {note_date(s.issued)} at "
        f"{s.issued.strftime('%H:%M')}.",
    ]
    return "\n".join(lines) + "\n"

"""Simulate one patient's history as facts (see model.py).

The simulation goes in the order a record grows: who the patient is, which
conditions they have, when they were seen, what was measured, prescribed,
performed and imaged, and finally the notes written about it. Each step only
reads earlier facts, so values stay consistent: a diabetic's HbA1c is high, a
breast-cancer patient gets tamoxifen and a mammogram, a penicillin-allergic
patient with pneumonia gets azithromycin.
"""

from __future__ import annotations

import random
import re
from datetime import date, datetime, timedelta, timezone

from faker import Faker

from medlake.generate import clinical as cl
from medlake.generate import model as m
from medlake.generate.notes import render_note, render_radiology_report
from medlake.generate.util import REF_DATE, REF_DATETIME, before_ref, new_uid, new_uuid

RACES = ((("2106-3", "White"), 60), (("2054-5", "Black or African American"), 14),
         (("2028-9", "Asian"), 7), (("1002-5", "American Indian or Alaska Native"), 1),
         (("2076-8", "Native Hawaiian or Other Pacific Islander"), 1), (("2131-1", "Other Race"), 5))
HISPANIC = ("2135-2", "Hispanic or Latino")
NOT_HISPANIC = ("2186-5", "Not Hispanic or Latino")
ENGLISH = ("en-US", "English (United States)")
SPANISH = ("es", "Spanish")
SPECIALIST = {"afib": "Cardiology", "copd": "Pulmonology", "asthma": "Pulmonology",
              "breast_cancer": "Oncology", "migraine": "Neurology"}


def _weighted(rng: random.Random, pairs):
    """Pick from (value, weight) pairs."""
    values, weights = zip(*pairs)
    return rng.choices(values, weights=weights)[0]


def make_clinicians(fake: Faker, rng: random.Random) -> list[m.Clinician]:
    """A fixed-size staff roster drawn once per run, so encounters share clinicians."""
    staff = []
    for specialty in cl.SPECIALTIES:
        for _ in range(3 if specialty in ("Internal Medicine", "Family Medicine", "Radiology") else 2):
            staff.append(m.Clinician(fake.first_name(), fake.last_name(),
                                     str(rng.randint(1_000_000_000, 1_999_999_999)), specialty))
    return staff


def simulate(index: int, mrn: str, rng: random.Random, fake: Faker,
             staff: list[m.Clinician]) -> m.Patient:
    """Simulate one patient end to end; index is 1-based and only used for ordering."""
    p = _demographics(index, mrn, rng, fake, staff)
    keys = _pick_conditions(p, rng)
    pneumonia_at = _encounters(p, rng, keys, staff)
    _conditions(p, rng, keys, pneumonia_at)
    _encounter_reasons(p, rng, staff)
    _allergies(p, rng)
    _medications(p, rng)
    _observations(p, rng, _baseline(p, rng))
    _procedures(p, rng)
    _immunizations(p, rng)
    _imaging(p, rng, staff)
    _notes(p, rng)
    return p


# ---------------------------------------------------------------- demographics


def _demographics(index: int, mrn: str, rng: random.Random, fake: Faker, staff) -> m.Patient:
    """Name, identifiers, contact details and social attributes."""
    gender = rng.choice(("male", "female"))
    given = fake.first_name_male() if gender == "male" else fake.first_name_female()
    family = fake.last_name()
    age = rng.randint(18, 90)
    birth = date(REF_DATE.year - age - 1, 1, 1) + timedelta(days=rng.randint(1, 365))
    marital = _weighted(rng, (("S", 80), ("M", 20))) if age < 27 else _weighted(
        rng, (("M", 50), ("S", 18), ("D", 15), ("W", 17 if age > 60 else 2)))
    prefix = "Mr." if gender == "male" else ("Mrs." if marital in ("M", "W") else "Ms.")
    hispanic = rng.random() < 0.18
    state = fake.state_abbr(include_territories=False, include_freely_associated_states=False)
    handle = re.sub(r"[^a-z]", "", f"{given}.{family}".lower().replace(".", "_")).replace("_", ".")
    pcps = [c for c in staff if c.specialty in ("Internal Medicine", "Family Medicine")]
    return m.Patient(
        index=index, id=new_uuid(rng), mrn=mrn,
        ssn=f"999-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        drivers_license=f"S99{rng.randint(1_000_000, 9_999_999)}" if rng.random() < 0.8 else None,
        prefix=prefix, given=given, family=family, mothers_maiden_name=fake.last_name(),
        gender=gender, birth_date=birth,
        phone=f"{rng.randint(201, 989)}-{rng.randint(201, 989)}-{rng.randint(0, 9999):04d}",
        email=f"{handle}{rng.randint(1, 99)}@{fake.free_email_domain()}",
        street=fake.street_address(), city=fake.city(), state=state,
        postal_code=fake.zipcode_in_state(state), marital=marital,
        race=_weighted(rng, RACES), ethnicity=HISPANIC if hispanic else NOT_HISPANIC,
        language=SPANISH if hispanic and rng.random() < 0.4 else ENGLISH,
        organization=rng.choice(cl.ORGANIZATIONS), pcp=rng.choice(pcps),
        smoking=_weighted(rng, (("never", 62), ("former", 23), ("current", 15))),
    )


def _pick_conditions(p: m.Patient, rng: random.Random) -> list[str]:
    """Condition keys for this patient; prevalence rises with age, COPD needs smoking."""
    age = p.age_at(REF_DATE)
    keys = []
    for d in cl.CONDITIONS.values():
        if age < d.min_age or (d.sex and d.sex != p.gender):
            continue
        prob = d.prevalence * (0.4 + age / 55 if d.chronic else 1.0)
        if d.key == "copd" and p.smoking == "never":
            prob *= 0.1
        if rng.random() < prob:
            keys.append(d.key)
    if "obesity" in keys and "diabetes" not in keys and age >= 25 and rng.random() < 0.3:
        keys.insert(1, "diabetes")
    if "copd" in keys and p.smoking == "never":
        p.smoking = "former"
    if age > 55 and rng.random() < 0.05:
        p.deceased = REF_DATETIME - timedelta(days=rng.randint(5, 300), minutes=rng.randint(0, 1439))
    return keys


# ------------------------------------------------------------------ encounters


def _encounters(p: m.Patient, rng: random.Random, keys: list[str], staff) -> int | None:
    """3–8 visits over the last five years; returns the index of the pneumonia visit."""
    n = rng.randint(3, 8)
    end = (p.deceased or REF_DATETIME) - timedelta(days=2)
    adult = datetime(p.birth_date.year + 18, p.birth_date.month, min(p.birth_date.day, 28), tzinfo=timezone.utc)
    start = min(max(REF_DATETIME - timedelta(days=5 * 365), adult), end - timedelta(days=n * 10))
    span = (end - start).days
    days = sorted(rng.sample(range(span), n))
    classes = ["AMB"] * n
    for i in range(1, n):
        classes[i] = _weighted(rng, (("AMB", 84), ("EMER", 9), ("IMP", 7)))
    pneumonia_at = None
    if "pneumonia" in keys:
        pneumonia_at = rng.randint(1, n - 1)
        classes[pneumonia_at] = rng.choice(("EMER", "IMP"))
    if p.deceased:
        classes[-1] = "IMP"
    for i, (day, cls) in enumerate(zip(days, classes)):
        begin = start.replace(hour=0, minute=0, second=0) + timedelta(days=day)
        p.encounters.append(_encounter(p, rng, i, begin, cls, staff))
    if p.deceased and p.encounters[-1].end > p.deceased:
        p.deceased = p.encounters[-1].end
    return pneumonia_at


def _encounter(p: m.Patient, rng: random.Random, i: int, day: datetime, cls: str, staff) -> m.Encounter:
    """One visit with times that fit its class (clinic hours, ED hours, inpatient days)."""
    if cls == "AMB":
        begin = day + timedelta(hours=8, minutes=15 * rng.randint(0, 34))
        finish = begin + timedelta(minutes=rng.choice((20, 30, 40, 45)))
        type_key = "checkup" if i == 0 else rng.choice(("checkup", "followup", "followup", "problem"))
        clinician = p.pcp
    elif cls == "EMER":
        begin = day + timedelta(minutes=rng.randint(0, 1439))
        finish = begin + timedelta(minutes=rng.randint(180, 480))
        type_key, clinician = "emergency", _staff(rng, staff, "Emergency Medicine")
    else:
        begin = day + timedelta(minutes=rng.randint(0, 1439))
        finish = begin + timedelta(days=rng.randint(2, 6), minutes=rng.randint(0, 600))
        type_key, clinician = "admission", _staff(rng, staff, "Hospital Medicine")
    if finish >= REF_DATETIME:
        finish = REF_DATETIME - timedelta(hours=1)
    return m.Encounter(new_uuid(rng), cls, type_key, begin, finish, clinician, p.organization)


def _staff(rng: random.Random, staff, specialty: str) -> m.Clinician:
    """A clinician of the given specialty from the run's roster."""
    return rng.choice([c for c in staff if c.specialty == specialty])


def _conditions(p: m.Patient, rng: random.Random, keys: list[str], pneumonia_at: int | None) -> None:
    """Diagnoses: chronic ones known at the first visit or found at a later clinic visit."""
    clinic = [e for e in p.encounters[1:] if e.cls == "AMB"]
    for key in keys:
        d = cl.CONDITIONS[key]
        code = _condition_code(rng, d)
        abatement = None
        if key == "pneumonia":
            enc = p.encounters[pneumonia_at]
            onset = enc.start - timedelta(days=rng.randint(2, 5), hours=rng.randint(0, 12))
            resolved = enc.start + timedelta(days=rng.randint(14, 28))
            abatement = resolved if resolved < REF_DATETIME else None
        elif clinic and rng.random() < 0.3:
            enc = rng.choice(clinic)
            onset = enc.start
        else:
            enc = p.encounters[0]
            onset = enc.start - timedelta(days=rng.randint(180, 3650))
            born = datetime.combine(p.birth_date, datetime.min.time(), timezone.utc)
            onset = min(max(onset, born + timedelta(days=365 * 18)), enc.start)
        control = ""
        if key in ("hypertension", "diabetes"):
            control = "poor" if rng.random() < 0.4 else "well"
        p.conditions.append(m.Condition(new_uuid(rng), d, code, onset, enc.start, enc, abatement, control))
    p.conditions.sort(key=lambda c: c.recorded)


def _condition_code(rng: random.Random, d: cl.ConditionDef) -> cl.Code:
    """The coding used for a diagnosis: a CKD stage by prevalence, else mostly the usual code."""
    if d.key == "ckd":
        stage = rng.choices(list(cl.CKD_STAGE_WEIGHTS), weights=list(cl.CKD_STAGE_WEIGHTS.values()))[0]
        return next(c for c in d.codes if c.code == stage)
    return d.codes[0] if len(d.codes) == 1 or rng.random() < 0.7 else rng.choice(d.codes[1:])


def _encounter_reasons(p: m.Patient, rng: random.Random, staff) -> None:
    """Why each visit happened; specialist clinic visits go to the matching specialist."""
    for enc in p.encounters:
        known = p.active_conditions(enc.start)
        if enc.cls in ("EMER", "IMP"):
            acute = [c for c in p.conditions if c.definition.key == "pneumonia" and c.encounter is enc]
            flare = [c for c in known if c.definition.key in ("asthma", "copd", "afib", "ckd")]
            enc.reason = acute[0] if acute else (rng.choice(flare) if flare else None)
        elif enc.type_key != "checkup" and known:
            enc.reason = rng.choice(known)
            specialty = SPECIALIST.get(enc.reason.definition.key)
            if specialty and rng.random() < 0.5:
                enc.clinician = _staff(rng, staff, specialty)


# ---------------------------------------------------------------- observations


def _baseline(p: m.Patient, rng: random.Random) -> dict:
    """Per-patient set points that each visit's measurements scatter around."""
    male = p.gender == "male"
    height = rng.gauss(176, 7) if male else rng.gauss(163, 6.5)
    bmi = rng.uniform(30.5, 41) if p.has("obesity") else rng.uniform(19.5, 29.5)
    ldl = rng.uniform(150, 200) if p.has("hyperlipidemia") else rng.uniform(70, 125)
    ckd = p.condition("ckd")
    creatinine = (_creatinine_for_stage(rng, p, ckd.code.code) if ckd else
                  rng.uniform(0.8, 1.2) if male else rng.uniform(0.6, 1.0))
    advanced = bool(ckd) and ckd.code.code in ("433144002", "431857002")
    return {
        "height": round(height, 1), "weight": bmi * (height / 100) ** 2,
        "ldl": ldl, "hdl": rng.uniform(36, 48) if p.has("hyperlipidemia") else rng.uniform(42, 72),
        "tg": rng.uniform(150, 260) if p.has("hyperlipidemia") else rng.uniform(70, 150),
        "creatinine": creatinine,
        "hemoglobin": (rng.uniform(13.5, 16.5) if male else rng.uniform(12.0, 15.0)) - (2.0 if advanced else 0.0),
        "hba1c": _baseline_a1c(p, rng),
    }


def _creatinine_for_stage(rng: random.Random, p: m.Patient, stage: str) -> float:
    """Serum creatinine whose CKD-EPI eGFR falls in the coded stage's range (by bisection)."""
    low, high = cl.CKD_STAGE_EGFR[stage]
    target = rng.uniform(low + 2, high - 2)
    age, female = p.age_at(REF_DATE), p.gender == "female"
    lo, hi = 0.3, 10.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _egfr(mid, age, female) > target else (lo, mid)
    return lo


def _baseline_a1c(p: m.Patient, rng: random.Random) -> float:
    """HbA1c set point: high when diabetes is poorly controlled, near-normal otherwise."""
    dm = p.condition("diabetes")
    if dm is not None:
        return rng.uniform(8.6, 11.8) if dm.control == "poor" else rng.uniform(6.4, 7.2)
    return rng.uniform(5.4, 6.1) if p.has("obesity") else rng.uniform(4.8, 5.6)


def _observations(p: m.Patient, rng: random.Random, base: dict) -> None:
    """Vital signs at every visit, smoking status at the first, labs at lab visits."""
    for i, enc in enumerate(p.encounters):
        _vitals(p, rng, enc, base)
        if i == 0:
            _smoking(p, rng, enc)
        if _is_lab_visit(p, enc, i):
            _labs(p, rng, enc, base)


def _obs(p: m.Patient, rng: random.Random, key: str, enc: m.Encounter, value: float,
         minutes: int = 5) -> m.Observation:
    """Record one quantity observation."""
    d = cl.OBS[key]
    value = round(value, d.decimals)
    value = int(value) if d.decimals == 0 else value
    o = m.Observation(new_uuid(rng), d, d.code, d.category, enc.start + timedelta(minutes=minutes), enc, value)
    p.observations.append(o)
    return o


def _vitals(p: m.Patient, rng: random.Random, enc: m.Encounter, base: dict) -> None:
    """Blood pressure, pulse, respiration, temperature and body size, shaped by conditions."""
    active = {c.definition.key: c for c in p.active_conditions(enc.start)}
    sick = enc.reason is not None and enc.reason.definition.key == "pneumonia"
    htn = active.get("hypertension")
    if htn:
        sys_, dia = ((rng.uniform(145, 168), rng.uniform(90, 102)) if htn.control == "poor"
                     else (rng.uniform(122, 136), rng.uniform(74, 86)))
    elif p.has("hypertension"):
        sys_, dia = rng.uniform(136, 150), rng.uniform(84, 94)
    else:
        sys_, dia = rng.uniform(104, 126), rng.uniform(64, 82)
    panel = m.Observation(new_uuid(rng), None, cl.BP_PANEL, cl.VITALS, enc.start + timedelta(minutes=5), enc,
                          components=[(cl.OBS["systolic"], int(round(sys_))), (cl.OBS["diastolic"], int(round(dia)))])
    p.observations.append(panel)
    hr = rng.uniform(100, 118) if sick else rng.uniform(88, 118) if "afib" in active else rng.uniform(60, 88)
    _obs(p, rng, "heart_rate", enc, hr)
    rr = rng.uniform(22, 28) if sick else rng.uniform(12, 18) + (2 if "copd" in active else 0)
    _obs(p, rng, "resp_rate", enc, rr)
    _obs(p, rng, "temperature", enc, rng.uniform(38.2, 39.4) if sick else rng.uniform(36.4, 37.2))
    weight = base["weight"] * rng.uniform(0.97, 1.03)
    _obs(p, rng, "weight", enc, weight)
    _obs(p, rng, "height", enc, base["height"])
    _obs(p, rng, "bmi", enc, round(weight, 1) / (base["height"] / 100) ** 2)


def _smoking(p: m.Patient, rng: random.Random, enc: m.Encounter) -> None:
    """Tobacco smoking status as a coded social-history observation."""
    p.observations.append(m.Observation(new_uuid(rng), None, cl.SMOKING_STATUS, cl.SOCIAL,
                                        enc.start + timedelta(minutes=8), enc,
                                        value_code=cl.SMOKING_VALUES[p.smoking]))


def _is_lab_visit(p: m.Patient, enc: m.Encounter, i: int) -> bool:
    """Labs are drawn at the first and last clinic visits, follow-ups and hospital stays."""
    last_amb = max((j for j, e in enumerate(p.encounters) if e.cls == "AMB"), default=0)
    return i in (0, last_amb) or enc.cls in ("EMER", "IMP") or enc.type_key == "followup"


def _labs(p: m.Patient, rng: random.Random, enc: m.Encounter, base: dict) -> None:
    """A chemistry/hematology set, plus HbA1c and lipids where they are indicated."""
    active = {c.definition.key for c in p.active_conditions(enc.start)}
    wobble = lambda: rng.uniform(0.95, 1.05)  # noqa: E731 - visit-to-visit scatter
    a1c = base["hba1c"] * wobble()  # undiagnosed disease already shows in the labs
    glucose = 28.7 * a1c - 46.7 + rng.uniform(-15, 25)  # ADAG estimated average glucose
    _obs(p, rng, "glucose", enc, max(glucose, 72), 30)
    creat = base["creatinine"] * rng.uniform(0.97, 1.03)
    _obs(p, rng, "creatinine", enc, creat, 30)
    _obs(p, rng, "egfr", enc, _egfr(round(creat, 2), p.age_at(enc.start), p.gender == "female"), 30)
    _obs(p, rng, "hemoglobin", enc, base["hemoglobin"] * wobble(), 30)
    if "diabetes" in active or enc.type_key == "checkup" or p.has("diabetes"):
        _obs(p, rng, "hba1c", enc, a1c, 30)
    if "hyperlipidemia" in active or enc.type_key == "checkup":
        statin = any(mr.med is cl.MEDS["atorvastatin"] and mr.authored <= enc.start for mr in p.medications)
        ldl = base["ldl"] * (0.7 if statin and "hyperlipidemia" in active else 1.0) * wobble()
        hdl = base["hdl"] * wobble()
        _obs(p, rng, "cholesterol", enc, ldl + hdl + base["tg"] / 5, 30)
        _obs(p, rng, "ldl", enc, ldl, 30)
        _obs(p, rng, "hdl", enc, hdl, 30)


def _egfr(creatinine: float, age: int, female: bool) -> float:
    """CKD-EPI 2021 estimate, so eGFR and creatinine agree."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine / kappa
    value = 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.2 * 0.9938 ** age * (1.012 if female else 1)
    return min(value, 120)


# ------------------------------------------------- allergies, meds, procedures


def _allergies(p: m.Patient, rng: random.Random) -> None:
    """About a quarter of patients have one or two documented allergies."""
    if rng.random() >= 0.25:
        return
    picks = rng.sample(cl.ALLERGIES, 2 if rng.random() < 0.2 else 1)
    first = p.encounters[0]
    for a in picks:
        p.allergies.append(m.Allergy(new_uuid(rng), a, first.start + timedelta(minutes=12), first))


def _medications(p: m.Patient, rng: random.Random) -> None:
    """Prescriptions that follow from the diagnoses (and respect a penicillin allergy)."""
    seen: set[str] = set()
    penicillin = any(a.definition.key == "penicillin" for a in p.allergies)
    for c in p.conditions:
        keys = list(c.definition.meds)
        if c.definition.key == "hypertension" and c.control == "poor":
            keys.append("amlodipine")
        if c.definition.key == "pneumonia" and penicillin:
            keys = ["azithromycin"]
        for key in keys:
            if key in seen:
                continue
            seen.add(key)
            med = cl.MEDS[key]
            status = ("stopped" if p.deceased else "active") if med.chronic else "completed"
            authored = c.encounter.start + timedelta(minutes=rng.randint(20, 40))
            p.medications.append(m.MedicationRequest(new_uuid(rng), med, status, authored, c.encounter, c,
                                                     c.encounter.clinician))


def _procedures(p: m.Patient, rng: random.Random) -> None:
    """Condition-specific procedures plus routine screening and reconciliation."""
    for c in p.conditions:
        for code in c.definition.procedures:
            _procedure(p, rng, code, c.encounter, c)
    for enc in p.encounters:
        if enc.type_key == "checkup" and rng.random() < 0.5:
            _procedure(p, rng, cl.DEPRESSION_SCREEN, enc, None)
        if enc.cls == "IMP":
            _procedure(p, rng, cl.MED_RECONCILIATION, enc, None)
    p.procedures.sort(key=lambda x: x.start)


def _procedure(p: m.Patient, rng: random.Random, code: cl.Code, enc: m.Encounter, reason) -> None:
    """Record one procedure inside its encounter."""
    start = enc.start + timedelta(minutes=rng.randint(5, 15))
    p.procedures.append(m.Procedure(new_uuid(rng), code, start, start + timedelta(minutes=rng.randint(10, 40)),
                                    enc, reason))


def _immunizations(p: m.Patient, rng: random.Random) -> None:
    """Flu shots in the autumn, a COVID dose, Td and pneumococcal where indicated."""
    clinic = [e for e in p.encounters if e.cls == "AMB"]
    seasons: set[int] = set()
    for enc in clinic:
        if enc.start.month >= 9 and enc.start.year not in seasons:
            seasons.add(enc.start.year)
            _vaccine(p, rng, "influenza", enc)
    if clinic and rng.random() < 0.6:
        _vaccine(p, rng, "covid", rng.choice(clinic))
    if clinic and rng.random() < 0.2:
        _vaccine(p, rng, "td", clinic[0])
    if clinic and (p.age_at(REF_DATE) >= 65 or p.has("copd") or p.has("asthma")):
        _vaccine(p, rng, "pneumococcal", clinic[-1])
    p.immunizations.sort(key=lambda x: x.date)


def _vaccine(p: m.Patient, rng: random.Random, key: str, enc: m.Encounter) -> None:
    """Record one administered vaccine (one per kind per visit)."""
    if any(i.encounter is enc and i.code == cl.VACCINES[key] for i in p.immunizations):
        return
    p.immunizations.append(m.Immunization(new_uuid(rng), cl.VACCINES[key],
                                          enc.start + timedelta(minutes=rng.randint(15, 25)), enc))


# --------------------------------------------------------------------- imaging


def _imaging(p: m.Patient, rng: random.Random, staff) -> None:
    """About 60% of patients get one or two exams, chosen by their conditions."""
    if rng.random() >= 0.6 and not p.has("breast_cancer"):
        return
    wanted = 1 if rng.random() < 0.65 else 2
    linked = [(kind, c) for c in p.conditions for kind in c.definition.imaging]
    rng.shuffle(linked)
    if p.has("breast_cancer"):
        linked.insert(0, ("MG_BREAST", p.condition("breast_cancer")))
    fallback = list(cl.DEFAULT_IMAGING) + (["MG_BREAST"] if p.gender == "female" and p.age_at(REF_DATE) >= 40 else [])
    rng.shuffle(fallback)
    chosen: list[tuple[str, m.Condition | None]] = []
    for kind, reason in linked + [(k, None) for k in fallback]:
        if len(chosen) < wanted and kind not in {k for k, _ in chosen}:
            chosen.append((kind, reason))
    radiologists = [c for c in staff if c.specialty == "Radiology"]
    for k, (kind, reason) in enumerate(chosen, start=1):
        p.imaging.append(_study(p, rng, k, cl.IMAGING[kind], reason, rng.choice(radiologists)))
    p.imaging.sort(key=lambda s: s.started)


def _study(p: m.Patient, rng: random.Random, k: int, d: cl.ImagingDef, reason, radiologist) -> m.ImagingStudy:
    """One exam with its series, instances, UIDs, findings and report text."""
    if reason is None:
        enc = rng.choice(p.encounters)
    elif reason.definition.key == "pneumonia":
        enc = reason.encounter
    else:
        enc = rng.choice([e for e in p.encounters if e.start >= reason.encounter.start])
    duration = max(int((enc.end - enc.start).total_seconds() // 60) - 5, 6)
    started = enc.start + timedelta(minutes=rng.randint(5, min(duration, 240)), seconds=rng.randint(0, 59))
    findings, impression, code = _findings(d, reason)
    series = []
    descriptions = rng.sample(d.series, min(rng.randint(1, 2), len(d.series)))
    for number, desc in enumerate(descriptions, start=1):
        instances = [m.Instance(new_uid(rng), i) for i in range(1, rng.randint(2, 4) + 1)]
        series.append(m.Series(new_uid(rng), number, desc, started + timedelta(minutes=2 * number), instances))
    study = m.ImagingStudy(
        id=new_uuid(rng), report_id=new_uuid(rng), definition=d, study_uid=new_uid(rng),
        frame_of_reference_uid=new_uid(rng), accession=f"ACC{p.index:05d}{k:02d}{rng.randint(100, 999)}",
        started=started, issued=before_ref(started + timedelta(hours=rng.randint(1, 20), minutes=rng.randint(0, 59))),
        encounter=enc, reason=reason, referrer=enc.clinician, radiologist=radiologist,
        device=rng.choice(d.devices), device_serial=str(rng.randint(10000, 99999)), series=series,
        findings=findings, impression=impression, conclusion_code=code, pixel_seed=rng.getrandbits(32))
    study.report_text = render_radiology_report(p, study)
    return study


def _findings(d: cl.ImagingDef, reason) -> tuple[list[str], str, cl.Code]:
    """Normal findings, with one sentence replaced when the exam shows the patient's disease."""
    findings = list(d.normal_findings)
    key = reason.definition.key if reason else None
    if key not in d.abnormal:
        return findings, d.normal_impression, cl.NORMAL_RESULT
    finding, impression, code, *where = d.abnormal[key]
    findings[where[0] if where else 0] = finding
    return findings, impression, code


# ----------------------------------------------------------------------- notes


def _notes(p: m.Patient, rng: random.Random) -> None:
    """Two to four notes, favouring recent visits and discharge summaries."""
    candidates: list[tuple[m.Encounter, str]] = []
    for i, enc in enumerate(p.encounters):
        if enc.cls == "IMP":
            candidates.append((enc, "discharge"))
        elif enc.cls == "EMER" or i == 0:
            candidates.append((enc, "hp"))
        else:
            candidates.append((enc, "progress"))
    wanted = min(rng.randint(2, 4), len(candidates))
    chosen = [candidates[-1]]
    rest = candidates[:-1]
    rest.sort(key=lambda c: (c[1] != "discharge", -c[0].start.timestamp()))
    chosen += rest[: wanted - 1]
    chosen.sort(key=lambda c: c[0].start)
    for enc, type_key in chosen:
        when = before_ref(enc.end + timedelta(minutes=rng.randint(5, 90)))
        author = enc.clinician
        text = render_note(p, type_key, enc, when, rng)
        p.notes.append(m.Note(new_uuid(rng), type_key, cl.NOTE_TYPES[type_key], when, enc, author, text))

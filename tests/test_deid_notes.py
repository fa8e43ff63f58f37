"""`privacy.scrub_text` on realistic multi-line notes: headers with names, addresses,
dates in several spellings, phone numbers in several formats."""
from medlake.privacy import scrub_text

KNOWN = ["Eleanor", "Whitfield", "MRN40417720", "77 Birchwood Lane Apt 4", "Millbrook",
         "999-41-0172", "(413) 555-0199", "1951-07-14"]

DISCHARGE = """DISCHARGE SUMMARY
Patient: WHITFIELD, Eleanor          MRN: MRN40417720        DOB: 07/14/1951
Address: 77 Birchwood Lane Apt 4, Millbrook, MA 01240
Home phone: (413) 555-0199   Cell: 413.555.0123   Work: +1 413 555 0177 x12
Admitted: March 3, 2024    Discharged: 8 Mar 2024
Attending: Dr. Samuel O'Neil     Consult: Nurse Patel

Mrs. Whitfield is a 72-year-old woman admitted on 2024-03-03 with community acquired
pneumonia. Her daughter (eleanor.w@example.net) was updated by phone. SSN on file:
999-41-0172. Follow up with Dr. Chen on 3/22/2024.
"""


def test_discharge_summary_keeps_no_identifier():
    out = scrub_text(DISCHARGE, KNOWN, days=5)
    for leaked in ["Eleanor", "WHITFIELD", "Whitfield", "40417720", "07/14/1951", "1951-07-14",
                   "Birchwood", "Millbrook", "01240", "555-0199", "555-0123", "555 0177",
                   "999-41-0172", "example.net", "O'Neil", "Patel", "Chen",
                   "March 3, 2024", "8 Mar 2024", "2024-03-03", "3/22/2024"]:
        assert leaked not in out, f"{leaked!r} survived scrubbing"
    assert "DOB: 1951-07-19" in out  # shifted, not removed: ages stay true


def test_clinical_content_and_structure_survive():
    out = scrub_text(DISCHARGE, KNOWN, days=5)
    assert out.splitlines()[0] == "DISCHARGE SUMMARY"
    assert len(out.splitlines()) == len(DISCHARGE.splitlines())
    assert "community acquired\npneumonia" in out and "72-year-old woman" in out
    assert "MA" in out  # the state is allowed (Safe Harbor keeps it)


def test_every_date_spelling_is_shifted_by_the_same_days():
    out = scrub_text("Admitted March 3, 2024; seen 2024-03-03, 03/03/2024 and 3 Mar 2024.",
                     days=-10)
    assert out.count("2024-02-22") == 4, out


def test_impossible_dates_become_a_tag_not_a_crash():
    assert scrub_text("Seen 02/30/2024 and 2024-13-01.", days=3) == "Seen [DATE] and [DATE]."


def test_radiology_header_accession_and_referrer():
    report = ("RADIOLOGY REPORT\nPatient: Whitfield^Eleanor   MRN: MRN40417720\n"
              "Accession: ACC0000201735   Accession No. 7781-22\n"
              "Referring physician: Dr. Amy Lin\nIMPRESSION: No acute disease.")
    out = scrub_text(report, KNOWN)
    for leaked in ["ACC0000201735", "7781-22", "Whitfield", "Eleanor", "Amy", "Lin"]:
        assert leaked not in out, leaked
    assert "IMPRESSION: No acute disease." in out


def test_values_of_other_people_and_ordinary_words_are_kept():
    out = scrub_text("Millbrooke clinic; patient eleanora unrelated.", KNOWN)
    assert out == "Millbrooke clinic; patient eleanora unrelated."

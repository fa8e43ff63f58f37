from medlake import privacy

KEY = b"test-key"


def test_person_key_is_keyed_stable_and_distinct():
    a = privacy.person_key("MRN00000001", KEY)
    assert a == privacy.person_key("MRN00000001", KEY)
    assert a != privacy.person_key("MRN00000002", KEY)
    assert a != privacy.person_key("MRN00000001", b"other-key")
    assert len(a) == 32 and "MRN" not in a
    assert privacy.person_key(None, KEY) is None and privacy.person_key("", KEY) is None


def test_pseudonyms_differ_by_kind():
    assert privacy.pseudonym("Patient", "1", KEY) != privacy.pseudonym("Encounter", "1", KEY)


def test_date_shift_is_per_person_bounded_and_never_zero():
    shifts = {privacy.date_shift_days(f"MRN{i:08d}", 30, KEY) for i in range(500)}
    assert 0 not in shifts
    assert min(shifts) >= -30 and max(shifts) <= 30
    assert len(shifts) > 40  # spread over the range, not a constant
    assert privacy.date_shift_days("MRN1", 30, KEY) == privacy.date_shift_days("MRN1", 30, KEY)
    assert privacy.date_shift_days("MRN1", 0, KEY) == 0


def test_scrub_text_removes_known_values_and_shaped_identifiers():
    note = ("Patient Maria Lopez (MRN: MRN12345678, SSN 999-12-3456) was seen on "
            "2024-03-05. Call (555) 123-4567 or maria.lopez@example.com. Lives at "
            "12 Elm Street, Springfield 01103. Ms. Lopez reports chest pain.")
    out = privacy.scrub_text(note, ["Maria", "Lopez", "MRN12345678", "12 Elm Street",
                                    "Springfield"], days=10)
    for leaked in ["Maria", "Lopez", "12345678", "999-12-3456", "555", "example.com",
                   "Elm Street", "Springfield", "01103", "2024-03-05"]:
        assert leaked not in out, leaked
    assert "2024-03-15" in out  # dates shift, so intervals in the story stay true
    assert "chest pain" in out


def test_scrub_text_matches_whole_words_only():
    out = privacy.scrub_text("Al has alopecia", ["Al"])
    assert out == "[REDACTED] has alopecia"


def test_street_line_is_redacted_whole_and_clinicians_are_tagged():
    out = privacy.scrub_text("Address: 48213 Julie Centers Apt. 978, Attending: Dr. Joshua Walker.",
                             ["48213 Julie Centers Apt. 978"])
    assert "Julie" not in out and "48213" not in out
    assert "Joshua" not in out and "Walker" not in out and "Dr. [CLINICIAN]" in out


def test_derived_uid_is_consistent_valid_and_keyed():
    from medlake.privacy import derived_uid

    uid = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
    a, b = derived_uid(uid, key=b"k1"), derived_uid(uid, key=b"k1")
    assert a == b and a.startswith("2.25.") and len(a) <= 64
    assert all(part.isdigit() for part in a.split("."))
    assert derived_uid(uid, key=b"k2") != a
    assert derived_uid(uid + "1", key=b"k1") != a
    assert derived_uid(None) is None and derived_uid("") is None

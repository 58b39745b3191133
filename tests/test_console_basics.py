"""What every page of the console relies on: the icon browsers ask for, the admin index's order."""

import struct

from django.test import Client


def test_favicon_answers_with_an_icon_to_anonymous_callers():
    response = Client().get("/favicon.ico", secure=True)

    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert "max-age=86400" in response["Cache-Control"]
    reserved, kind, count = struct.unpack("<HHH", response.content[:6])
    assert (reserved, kind, count) == (0, 1, 1)  # an ICO file with one image
    assert response.content[22:30] == b"\x89PNG\r\n\x1a\n"  # that image is a PNG


def test_favicon_refuses_writes():
    assert Client().post("/favicon.ico", secure=True).status_code == 405


def test_admin_index_shows_the_engine_first_and_django_q2_last_as_internals(admin_env, superuser, client):
    client.force_login(superuser)

    response = client.get("/admin/", secure=True)

    assert response.status_code == 200
    labels = [app["app_label"] for app in response.context["app_list"]]
    assert labels[:2] == ["partitions", "billing"]
    assert labels[-1] == "django_q"
    assert set(labels) >= {"auth"}  # Django's own apps stay, between the two
    names = {app["app_label"]: app["name"] for app in response.context["app_list"]}
    assert names["django_q"].endswith("(internals)")
    assert names["partitions"] == "Partitioned jobs"
    body = response.content.decode()
    assert body.index("Partitioned jobs") < body.index("Billing demo") < body.index("(internals)")

import pytest

from comfyui_img2img.nodes.core.paths import resolve_inside


def test_names_inside_resolve(tmp_path):
    (tmp_path / "photos").mkdir()
    assert resolve_inside(tmp_path, "photos/cat.png", "image") == tmp_path.resolve() / "photos" / "cat.png"


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "photos/../../x.png", "", "a\x00b"])
def test_names_that_leave_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="image"):
        resolve_inside(tmp_path, name, "image")


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    inside = tmp_path / "input"
    inside.mkdir()
    (inside / "escape.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(ValueError, match="outside"):
        resolve_inside(inside, "escape.png", "image")

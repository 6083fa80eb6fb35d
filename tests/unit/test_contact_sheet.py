import pytest
import torch

from comfyui_img2img.nodes.core.contact_sheet import contact_sheet
from comfyui_img2img.nodes.core.number_lists import parse_numbers


def test_parse_numbers_reads_lists_and_names_the_input():
    assert parse_numbers("0.2, 0.4,0.6,", "denoise_values") == [0.2, 0.4, 0.6]
    assert parse_numbers("1; 2", "seeds", int) == [1, 2]
    assert len(parse_numbers(", ".join(["0.5"] * 32), "denoise_values")) == 32
    with pytest.raises(ValueError, match="denoise_values: at most 32 values"):
        parse_numbers(", ".join(["0.5"] * 100_000), "denoise_values")
    for bad in ("", "0.2, x", "nan"):
        with pytest.raises(ValueError, match="denoise_values"):
            parse_numbers(bad, "denoise_values")


def test_the_sheet_places_each_image_in_its_cell_with_labels_around():
    colours = torch.linspace(0.1, 0.9, 6)
    images = colours[:, None, None, None].expand(6, 20, 30, 3).contiguous()
    sheet = contact_sheet(images, ["denoise 0.2", "denoise 0.4", "denoise 0.6"], ["seed 1", "seed 2"], gap=4)
    assert sheet.shape[0] == 1 and sheet.shape[3] == 3
    height, width = sheet.shape[1:3]
    # Right and bottom edges: the grid ends in one gap after the last cell.
    label_width = width - 3 * (30 + 4) - 4
    label_height = height - 2 * (20 + 4) - 4
    assert label_width > 0 and label_height > 0
    for index, colour in enumerate(colours):
        row, column = divmod(index, 3)
        top, left = label_height + 4 + row * 24, label_width + 4 + column * 34
        cell = sheet[0, top : top + 20, left : left + 30]
        assert torch.allclose(cell, torch.full_like(cell, float((colour * 255).round() / 255)), atol=1e-6)
    # The labels are drawn: dark pixels above the columns and left of the rows, white elsewhere there.
    assert float(sheet[0, :label_height, label_width:].min()) < 0.5
    assert float(sheet[0, label_height:, :label_width].min()) < 0.5
    assert float(sheet[0, :label_height, :label_width].min()) == 1.0


def test_a_sheet_that_does_not_fill_its_grid_is_refused():
    with pytest.raises(ValueError, match="images"):
        contact_sheet(torch.zeros(5, 8, 8, 3), ["a", "b", "c"], ["1", "2"])

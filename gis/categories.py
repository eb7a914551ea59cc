"""Case categories and departments: the default trees, seeded as configuration rows.

Two trees, components (部件: fixed city assets) and events (事件: things that happen), each
domain → major → minor. Codes: ``C``/``E`` + 2-digit domain + 2-digit major + 2-digit minor
(``C010101``). Every minor category carries a default department, a deadline and an urgency
(1 low … 4 critical); deadlines are in working hours or working days (DOMAIN.md: 2–4 working
hours for street cleaning up to 20 working days for demolition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

DEPARTMENTS: tuple[tuple[str, str, str], ...] = (
    ("CITYMGMT", "City Management Bureau (城市管理局)", "government"),
    ("ENFORCE", "Comprehensive Law Enforcement (综合执法)", "government"),
    ("PARKS", "Parks and Greening (园林绿化)", "government"),
    ("ROADS", "Roads and Municipal Works (市政道路)", "government"),
    ("WATER", "Water Authority (水务)", "utility"),
    ("SANITATION", "Sanitation (环卫)", "government"),
    ("POLICE", "Public Security (公安)", "government"),
    ("FIRE", "Fire and Rescue (消防)", "government"),
    ("SOCIAL", "Civil Affairs and Community Services (民政)", "government"),
    ("HOUSING", "Housing and Construction (住建)", "government"),
    ("ENVIRON", "Ecology and Environment (生态环境)", "government"),
    ("POWER", "Power Supply Company (供电公司)", "utility"),
    ("TRAFFIC", "Traffic Management (交通)", "government"),
    ("MARKET", "Market Regulation (市场监管)", "government"),
    ("TELECOM", "Telecom Operators (通信)", "utility"),
    ("GAS", "Gas Company (燃气公司)", "utility"),
)


@dataclass(frozen=True)
class Minor:
    name: str
    name_zh: str
    department: str
    deadline: float
    unit: str  # working_hours | working_days | hours | days
    urgency: int = 2


# (domain name, zh) → (major name, zh) → minors
COMPONENTS: dict[tuple[str, str], dict[tuple[str, str], list[Minor]]] = {
    ("Public utilities", "公用设施"): {
        ("Manhole covers", "井盖"): [
            Minor("Water supply manhole cover", "上水井盖", "WATER", 4, "working_hours", 3),
            Minor("Sewer manhole cover", "污水井盖", "WATER", 4, "working_hours", 3),
            Minor("Power manhole cover", "电力井盖", "POWER", 4, "working_hours", 3),
            Minor("Telecom manhole cover", "通信井盖", "TELECOM", 1, "working_days", 2),
            Minor("Gas manhole cover", "燃气井盖", "GAS", 2, "working_hours", 4),
        ],
        ("Hydrants and boxes", "消防与箱体"): [
            Minor("Fire hydrant", "消防栓", "FIRE", 1, "working_days", 3),
            Minor("Power distribution box", "电力设施箱", "POWER", 2, "working_days", 2),
        ],
    },
    ("Road traffic", "道路交通"): {
        ("Lighting and signals", "照明与信号"): [
            Minor("Street light", "路灯", "ROADS", 2, "working_days", 2),
            Minor("Traffic signal", "交通信号灯", "TRAFFIC", 4, "working_hours", 4),
            Minor("Traffic sign", "交通标志牌", "TRAFFIC", 3, "working_days", 2),
        ],
        ("Road furniture", "道路设施"): [
            Minor("Guardrail", "护栏", "ROADS", 3, "working_days", 2),
            Minor("Bus shelter", "公交站亭", "TRAFFIC", 5, "working_days", 1),
            Minor("Bicycle parking", "自行车停放点", "ROADS", 5, "working_days", 1),
        ],
    },
    ("City appearance", "市容环境"): {
        ("Sanitation facilities", "环卫设施"): [
            Minor("Litter bin", "果皮箱", "SANITATION", 4, "working_hours", 1),
            Minor("Public toilet", "公厕", "SANITATION", 1, "working_days", 2),
            Minor("Garbage station", "垃圾间", "SANITATION", 1, "working_days", 2),
        ],
    },
    ("Landscaping", "园林绿化"): {
        ("Green facilities", "绿化设施"): [
            Minor("Street tree", "行道树", "PARKS", 3, "working_days", 2),
            Minor("Green belt", "绿地", "PARKS", 5, "working_days", 1),
            Minor("Park bench", "座椅", "PARKS", 5, "working_days", 1),
        ],
    },
    ("Housing and land", "房屋土地"): {
        ("Building facilities", "房屋设施"): [
            Minor("Dangerous building element", "危险建筑构件", "HOUSING", 1, "working_days", 4),
        ],
    },
    ("Other facilities", "其他设施"): {
        ("Monitoring", "监控设施"): [
            Minor("Surveillance camera", "监控电子眼", "POLICE", 3, "working_days", 2),
            Minor("Environmental sensor", "环境监测站", "ENVIRON", 3, "working_days", 2),
        ],
    },
}

EVENTS: dict[tuple[str, str], dict[tuple[str, str], list[Minor]]] = {
    ("City appearance", "市容环境"): {
        ("Cleanliness", "环境卫生"): [
            Minor("Garbage pile-up", "暴露垃圾", "SANITATION", 4, "working_hours", 2),
            Minor("Overflowing bins", "垃圾满溢", "SANITATION", 2, "working_hours", 2),
            Minor("Street cleaning", "道路不洁", "SANITATION", 3, "working_hours", 1),
            Minor("Dead animal", "动物尸体", "SANITATION", 2, "working_hours", 2),
            Minor("Graffiti and flyposting", "乱涂乱画小广告", "CITYMGMT", 2, "working_days", 1),
        ],
        ("Pollution", "污染"): [
            Minor("Noise", "噪声扰民", "ENVIRON", 1, "working_days", 2),
            Minor("Open burning", "焚烧垃圾", "ENVIRON", 2, "working_hours", 3),
            Minor("Water leak", "跑冒滴漏", "WATER", 4, "working_hours", 3),
            Minor("Sewage overflow", "污水外溢", "WATER", 4, "working_hours", 3),
        ],
    },
    ("Advertising", "宣传广告"): {
        ("Signs", "广告招牌"): [
            Minor("Illegal billboard", "违规户外广告", "CITYMGMT", 5, "working_days", 1),
            Minor("Damaged shop sign", "招牌破损", "CITYMGMT", 2, "working_days", 3),
        ],
    },
    ("Construction", "施工管理"): {
        ("Construction sites", "施工"): [
            Minor("Illegal construction", "违法建设", "ENFORCE", 20, "working_days", 3),
            Minor("Construction dust", "施工扬尘", "ENVIRON", 1, "working_days", 2),
            Minor("Road excavation", "道路挖掘", "ROADS", 3, "working_days", 2),
            Minor("Muck truck spillage", "渣土遗撒", "ENFORCE", 4, "working_hours", 2),
        ],
    },
    ("Emergencies", "突发事件"): {
        ("Hazards", "安全隐患"): [
            Minor("Safety hazard", "安全隐患", "FIRE", 4, "working_hours", 4),
            Minor("Road collapse", "路面塌陷", "ROADS", 2, "hours", 4),
            Minor("Waterlogging", "道路积水", "WATER", 4, "hours", 4),
            Minor("Fallen tree", "树木倒伏", "PARKS", 4, "hours", 3),
            Minor("Gas leak", "燃气泄漏", "GAS", 1, "hours", 4),
        ],
    },
    ("Street order", "街面秩序"): {
        ("Occupation", "占道"): [
            Minor("Street occupation by shops", "店外经营", "ENFORCE", 1, "working_days", 2),
            Minor("Unlicensed street vendor", "无照经营游商", "ENFORCE", 4, "working_hours", 2),
            Minor("Open-air barbecue", "露天烧烤", "ENFORCE", 2, "working_hours", 2),
            Minor("Illegal parking", "违章停车", "TRAFFIC", 2, "working_hours", 1),
            Minor("Abandoned vehicle", "废弃车辆", "TRAFFIC", 5, "working_days", 1),
        ],
        ("Public order", "社会秩序"): [
            Minor("Neighbour dispute", "邻里纠纷", "SOCIAL", 3, "working_days", 2),
            Minor("Group gathering", "群体聚集", "POLICE", 2, "working_hours", 3),
            Minor("Begging", "街头乞讨", "SOCIAL", 1, "working_days", 1),
        ],
    },
    ("Other events", "其他事件"): {
        ("Services", "公共服务"): [
            Minor("Heating failure", "供暖故障", "HOUSING", 1, "working_days", 3),
            Minor("Elevator failure", "电梯故障", "MARKET", 4, "working_hours", 3),
            Minor("Pest infestation", "病媒生物", "SANITATION", 3, "working_days", 1),
        ],
    },
}


def default_rows() -> list[dict[str, Any]]:
    """The default tree as rows (parents before children)."""
    rows: list[dict[str, Any]] = []
    for prefix, kind, tree in (("C", "component", COMPONENTS), ("E", "event", EVENTS)):
        for d, ((dname, dzh), majors) in enumerate(tree.items(), start=1):
            dcode = f"{prefix}{d:02d}"
            rows.append({"code": dcode, "kind": kind, "parent": None, "depth": 0,
                         "name": dname, "name_zh": dzh})
            for m, ((mname, mzh), minors) in enumerate(majors.items(), start=1):
                mcode = f"{dcode}{m:02d}"
                rows.append({"code": mcode, "kind": kind, "parent": dcode, "depth": 1,
                             "name": mname, "name_zh": mzh})
                for n, minor in enumerate(minors, start=1):
                    rows.append({
                        "code": f"{mcode}{n:02d}", "kind": kind, "parent": mcode, "depth": 2,
                        "name": minor.name, "name_zh": minor.name_zh,
                        "department": minor.department, "deadline_value": minor.deadline,
                        "deadline_unit": minor.unit, "urgency": minor.urgency,
                    })
    return rows


def seed_departments(conn: Connection) -> None:
    conn.execute(
        text("INSERT INTO departments (code, name, kind) VALUES (:code, :name, :kind)"
             " ON CONFLICT (code) DO NOTHING"),
        [{"code": c, "name": n, "kind": k} for c, n, k in DEPARTMENTS],
    )


def seed_defaults(conn: Connection) -> None:
    """Seed departments and the default category trees; existing codes are left untouched."""
    seed_departments(conn)
    for row in default_rows():
        conn.execute(
            text(
                """
                INSERT INTO categories (code, kind, parent_id, depth, name, name_zh,
                                        department_id, deadline_value, deadline_unit, urgency)
                VALUES (:code, :kind, (SELECT id FROM categories WHERE code = :parent), :depth,
                        :name, :name_zh, (SELECT id FROM departments WHERE code = :department),
                        :deadline_value, :deadline_unit, COALESCE(:urgency, 2))
                ON CONFLICT (code) DO NOTHING
                """
            ),
            {"department": None, "deadline_value": None, "deadline_unit": None,
             "urgency": None, **row},
        )

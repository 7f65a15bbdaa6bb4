//! The Chinese texts the traffic generator (`generator.rs`) fills in: report templates for the
//! seven categories, 110 call texts, incident wordings, chatter, and the invented places of the
//! nine Changsha districts.
//!
//! All texts here were written for citypulse. Place names are the real district names with
//! invented roads, residential compounds, shops and companies. `{slot}` placeholders are filled
//! by the generator; the slot names are listed on `Slots::value` in `generator.rs`, and a unit
//! test there fills every template and fails on any slot it does not know.

use super::generator::PUBLIC_SAFETY as SAFETY;

/// One of the nine districts the demo city is made of: the real names and 行政区划 codes of
/// Changsha, invented roads and compounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct District {
    pub name: &'static str,
    /// The six-digit 行政区划 code (110 `xzqh`, and the first six digits of a resident ID).
    pub code: &'static str,
    /// Approximate centre, WGS-84 degrees.
    pub lat: f64,
    pub lon: f64,
    pub roads: &'static [&'static str],
    pub communities: &'static [&'static str],
}

pub static DISTRICTS: [District; 9] = [
    District {
        name: "芙蓉区",
        code: "430102",
        lat: 28.1932,
        lon: 113.0326,
        roads: &["锦湘东路", "荷塘西路", "朝晖二路", "马坡岭街"],
        communities: &["荷韵小区", "锦绣东苑", "朝晖花园"],
    },
    District {
        name: "天心区",
        code: "430103",
        lat: 28.1127,
        lon: 112.9893,
        roads: &["南湖湾路", "赤岭东路", "新姚北路", "白沙湾街"],
        communities: &["南湖雅苑", "桂园小区", "赤岭新村"],
    },
    District {
        name: "岳麓区",
        code: "430104",
        lat: 28.2351,
        lon: 112.9314,
        roads: &["麓谷西路", "枫溪路", "桐梓坡南路", "岚山大道"],
        communities: &["麓景花园", "枫溪小区", "桐梓佳苑"],
    },
    District {
        name: "开福区",
        code: "430105",
        lat: 28.2557,
        lon: 112.9855,
        roads: &["北辰滨江路", "洪山桥路", "伍家岭西路", "新河街"],
        communities: &["北辰雅居", "洪山小区", "新河苑"],
    },
    District {
        name: "雨花区",
        code: "430111",
        lat: 28.1354,
        lon: 113.0355,
        roads: &["圭塘中路", "洞井东路", "雨桐路", "黎托北路"],
        communities: &["圭塘花园", "雨桐小区", "黎托新苑"],
    },
    District {
        name: "望城区",
        code: "430112",
        lat: 28.3475,
        lon: 112.8196,
        roads: &["丁字湾路", "黄金园路", "乔口南街", "铜官窑路"],
        communities: &["丁字湾小区", "金园新村", "铜官佳苑"],
    },
    District {
        name: "长沙县",
        code: "430121",
        lat: 28.2461,
        lon: 113.0807,
        roads: &["星沙北路", "榔梨大道", "泉塘东路", "黄兴南街"],
        communities: &["星沙名苑", "泉塘小区", "榔梨花园"],
    },
    District {
        name: "浏阳市",
        code: "430181",
        lat: 28.1630,
        lon: 113.6433,
        roads: &["金沙北路", "淮川路", "集里大道", "花炮街"],
        communities: &["淮川花园", "集里小区", "金沙苑"],
    },
    District {
        name: "宁乡市",
        code: "430182",
        lat: 28.2775,
        lon: 112.5519,
        roads: &["玉潭南路", "沩水路", "花明北路", "白马桥街"],
        communities: &["玉潭新村", "沩水花园", "花明小区"],
    },
];

/// A citizen report in the formal voice of a 12345 work order: a title and a body.
#[derive(Clone, Copy)]
pub struct ReportTemplate {
    pub title: &'static str,
    pub body: &'static str,
    /// The 诉求类型 an operator would file it under.
    pub kind: &'static str,
}

/// Everything the generator says about one of the seven categories.
pub struct CategoryTexts {
    pub category: &'static str,
    /// Formal reports (12345, WeChat, long Weibo posts); filled, 40–300 characters.
    pub reports: &'static [ReportTemplate],
    /// Short social-media posts.
    pub posts: &'static [&'static str],
    /// Weibo topics that go with the category.
    pub hashtags: &'static [&'static str],
}

const fn report(title: &'static str, kind: &'static str, body: &'static str) -> ReportTemplate {
    ReportTemplate { title, body, kind }
}

pub static CATEGORY_TEXTS: [CategoryTexts; 7] = [
    CategoryTexts {
        category: "城乡建设",
        reports: &[
            report("{road}路面破损严重", "投诉", "{district}{road}靠近{community}的路段路面坑洼不平，最大的坑有脸盆那么大，下雨天积水看不清，已经有好几个骑电动车的人摔倒了。这种情况已经持续{days}天，希望相关部门尽快派人修补，联系电话{phone}。"),
            report("夜间施工噪音扰民", "投诉", "{district}{community}旁边的工地每天{time}以后还在打桩、运渣土，噪音特别大，家里老人小孩根本睡不着。请问夜间施工有没有办理许可？希望城管部门去现场查处，还居民一个安静的夜晚。"),
            report("{community}有住户违章搭建", "举报", "举报{district}{community}{n}栋一楼住户私自在公共绿地上搭建彩钢棚，面积大概有{area}平方米，还占用了消防通道，物业多次劝阻无效。请相关部门依法拆除违章建筑，恢复绿地。"),
            report("{road}路灯长期不亮", "投诉", "{district}{road}从{community}门口到下一个路口有{n}盏路灯坏了快一个月，晚上一片漆黑，下夜班的人走路很害怕，前几天还有人在这里被抢了包。希望尽快维修路灯。"),
            report("物业不作为，电梯经常停运", "投诉", "{district}{community}的{property}收了物业费却不管事，{n}栋电梯一个月坏了三次，每次都要等好几天才修，楼上的老人下不了楼。垃圾也经常几天不清运，楼道里臭气熏天。请住建部门督促物业履行职责。"),
            report("小区停水没有提前通知", "求助", "{district}{community}从今天早上开始停水，到现在已经{hours}个小时了，事先没有任何通知，打供水公司电话一直占线。家里有老人和婴儿，生活非常不便，请问什么时候能恢复供水？"),
            report("咨询老旧小区改造政策", "咨询", "请问{district}{community}属于老旧小区吗？小区是九十年代建的，外墙脱落、管网老化，听说今年有老旧小区改造的计划，想咨询一下申报条件和流程，居民应该找哪个部门？"),
            report("建议增设人行横道和护栏", "建议", "{road}是{district}的主干道，{community}门口既没有人行横道也没有护栏，早晚高峰大家都横穿马路，非常危险。建议在这里增设人行横道和护栏，方便居民安全出行。"),
            report("下水道堵塞污水外溢", "投诉", "{district}{road}{community}门口的下水道堵了很久，一下雨污水就漫到路面上，气味难闻，行人只能踮着脚走。已经跟社区反映过{n}次都没有解决，请市政部门尽快疏通。"),
            report("开发商延期交房", "投诉", "本人在{district}购买了{company}开发的楼盘，合同约定去年年底交房，到现在已经延期{months}个月，开发商一直拖着不给说法。请住建部门介入，维护购房者的合法权益，联系电话{phone}。"),
        ],
        posts: &[
            "{road}这个坑到底什么时候补啊，今天又看到一个骑电驴的摔了",
            "{community}旁边的工地{time}了还在打桩，还让不让人睡觉了",
            "{district}{community}又停水了，也不提前通知一声",
            "我们小区物业真的绝了，电梯坏了一个星期没人修",
            "{road}的路灯坏了好久了，晚上黑漆漆的好吓人",
        ],
        hashtags: &["#物业#", "#施工扰民#", "#城市管理#"],
    },
    CategoryTexts {
        category: "环境保护",
        reports: &[
            report("{company}夜间排放刺鼻气体", "投诉", "{district}{road}附近的{company}经常在夜间排放刺鼻的气体，味道像烧塑料一样，{community}的居民晚上都不敢开窗，很多人出现咳嗽、头晕的症状。希望环保部门夜间突击检查。"),
            report("河道污染严重", "举报", "{district}{community}旁边的小河最近水变成了黑色，上面漂着一层油污，死鱼很多，散发恶臭。怀疑上游有企业偷排污水，请环保部门尽快查明污染源并严肃处理。"),
            report("工厂噪音扰民", "投诉", "{district}{road}的{company}厂房机器日夜不停地运转，轰隆隆的声音隔着几百米都能听到，已经严重影响{community}居民的休息。请问工业企业的噪声排放标准是多少？希望派人来测一下。"),
            report("有人露天焚烧垃圾", "举报", "{district}{community}后面的空地上，每天{time}左右就有人焚烧垃圾和废旧轮胎，黑烟滚滚，整个小区都是焦糊味，晾在外面的衣服都熏黑了。请相关部门制止露天焚烧行为。"),
            report("烧烤店油烟直排居民楼", "投诉", "{district}{road}上新开的{restaurant}，油烟没有经过净化直接排到居民楼的窗户下面，{community}{n}栋的住户家里全是油烟味，窗户都不敢开。请环保和城管部门处理。"),
            report("垃圾中转站臭味扰民", "建议", "{district}{community}门口的垃圾中转站离居民楼只有十几米，夏天臭味熏天，蚊蝇乱飞，渗滤液流得到处都是。建议对垃圾站进行封闭改造或者搬迁，并加强清洗消毒。"),
            report("渣土车扬尘污染", "投诉", "{district}{road}每天晚上有大量渣土车经过，车辆没有覆盖篷布，沿路撒落泥土，白天尘土飞扬，路边商铺和{community}的居民苦不堪言。请加强渣土车管理和道路冲洗。"),
            report("咨询空气质量监测", "咨询", "最近{district}的空气质量好像很差，早上起来雾蒙蒙的，还有一股怪味。想咨询一下附近有没有空气质量监测点，在哪里可以查到实时数据，这种天气老人小孩出门需要注意什么？"),
            report("养殖场粪污直排", "举报", "{district}{community}附近有一个养猪场，粪污直接排进旁边的水塘和农田，气味很大，井水都受到了影响。村民多次反映没有结果，希望生态环境局派人现场查看，联系电话{phone}。"),
        ],
        posts: &[
            "{district}这边晚上又是一股刺鼻的味道，窗户都不敢开",
            "{community}后面又有人在烧垃圾，整个小区都是烟",
            "{road}边上的小河都黑了，臭得不行",
            "楼下烧烤店的油烟全飘进我家了，投诉了好多次都没用",
        ],
        hashtags: &["#环境污染#", "#蓝天保卫战#"],
    },
    CategoryTexts {
        category: "交通运输",
        reports: &[
            report("{bus}路公交车班次太少", "建议", "{district}{road}站的{bus}路公交车，早高峰经常要等四十多分钟才来一趟，来了又挤不上去。站牌上写的发车间隔是{minutes}分钟，实际完全不是这样。建议高峰期加密班次。"),
            report("出租车拒载绕路", "投诉", "今天{time}在{district}{road}打了一辆出租车，车牌号湘A{plate}，司机听说去{community}嫌路程近直接拒载，态度非常恶劣。后来又打了一辆，明显绕路多收了{price}元。请交通运输部门查处。"),
            report("路口信号灯配时不合理", "建议", "{district}{road}与{road2}交叉口的红绿灯，直行绿灯只有十几秒，每次都要等两三轮才能通过，早晚高峰堵成一条长龙。建议交警部门重新调整信号灯配时。"),
            report("小区门口乱停车", "投诉", "{district}{community}门口的{road}两边每天都停满了车，有的直接停在人行道和盲道上，消防车根本进不来。希望交警加强违停执法，或者规划一些停车位。"),
            report("公交司机态度恶劣", "投诉", "{time}乘坐{bus}路公交车，老人刚上车还没站稳司机就猛踩油门，老人差点摔倒，乘客提醒了一句，司机还骂人。请公交公司加强对司机的教育管理，联系电话{phone}。"),
            report("咨询公交线路调整", "咨询", "听说{bus}路公交车要改线，不再经过{district}{road}了，{community}的居民出行会很不方便。请问调整方案是怎么定的？有没有征求过沿线居民的意见？"),
            report("路边停车乱收费", "投诉", "{district}{road}路边的停车位，收费人员没有穿工作服也不出具票据，停了半个小时就收了{price}元，明显超过了公示的收费标准。请问这种收费是否合法？"),
            report("网约车司机危险驾驶", "投诉", "我在{district}叫了一辆网约车，司机一路上边开车边看手机，多次闯黄灯，在{road}上还差点追尾，我非常害怕。已经在平台投诉但没有回复，希望交通部门对网约车平台加强监管。"),
            report("新修道路没有标线", "建议", "{district}{road}刚铺了新沥青，但是一直没有画标线，晚上车辆行驶全凭感觉，已经发生好几起剐蹭了。请尽快施划道路标线并设置警示标志。"),
        ],
        posts: &[
            "等{bus}路等了四十分钟，长沙的公交真的服了",
            "{road}这个红绿灯设计得太离谱了，绿灯十秒钟",
            "{community}门口天天乱停车，消防车都进不去",
            "打车被拒载，司机嫌近，湘A{plate}，大家避雷",
        ],
        hashtags: &["#长沙交通#", "#出行#"],
    },
    CategoryTexts {
        category: "教育文体",
        reports: &[
            report("学校违规收取资料费", "举报", "{district}{school}这学期要求每个学生交{price}元的资料费和校服费，没有任何收据，家长群里老师说不交会影响孩子的座位安排。请问这种收费是否符合规定？请教育局核查。"),
            report("公办幼儿园入园难", "咨询", "我家孩子今年满三岁，户口在{district}{community}，附近的公办幼儿园说学位已满，民办幼儿园一个月要{amount}元，实在负担不起。请问公办园的学位是怎么分配的？"),
            report("居民楼内违规开办补习班", "举报", "{district}{road}有一家培训机构在居民楼里偷偷开办学科类补习班，周末从早上8点上到晚上9点，学生进进出出很吵。这是不是违反了双减政策？希望相关部门查处。"),
            report("学校体育场地不对外开放", "建议", "{district}{school}的操场和篮球场周末和假期一直锁着门，不对附近居民开放。学校说是安全原因，但是文件要求学校体育设施向社会开放，希望教育局协调一下。"),
            report("学区划分不合理", "咨询", "{district}{community}离{school}只有五百米，但是今年的学区划分把我们小区划到了三公里外的另一所学校，孩子上学要过两条主干道。请问学区划分的依据是什么？能否重新考虑？"),
            report("老师辱骂学生", "投诉", "{district}{school}三年级的一位老师经常罚孩子站在走廊上，还当着全班的面辱骂学生，我家孩子现在都不敢去上学了。希望教育局调查处理，联系电话{phone}。"),
            report("建议延长社区图书馆开放时间", "建议", "{district}{community}的社区图书馆只在工作日白天开放，上班族和学生根本用不上。建议晚上和周末也开放，并增加一些儿童读物和自习座位。"),
            report("健身中心游泳馆收费不透明", "投诉", "{district}{road}的全民健身中心游泳馆办卡时说好一年{amount}元不限次数，现在突然说要另外收取管理费，还限制了开放时段。请文体部门核查这种做法是否合规。"),
            report("接送学生车辆超载", "举报", "{district}{school}的接送车是一辆破旧的面包车，核载七人却坐了十几个孩子，每天在{road}上来回跑，非常危险。请教育部门查一查这辆车有没有校车资质。"),
        ],
        posts: &[
            "{school}又要交资料费，这学期都交了三次了",
            "附近的公办幼儿园都没学位，民办一个月好几千，怎么生得起",
            "学校操场为什么不能对居民开放啊，周末想打个球都没地方",
            "楼上又开了个补习班，不是说双减了吗",
        ],
        hashtags: &["#双减#", "#入园难#", "#教育#"],
    },
    CategoryTexts {
        category: "劳动和社会保障",
        reports: &[
            report("工地拖欠农民工工资", "求助", "我们{n}个人在{district}{road}的{company}工地干了{months}个月，老板一直拖欠工资，总共{amount}元，现在人也联系不上了。家里等着钱用，请劳动监察部门帮帮我们。本人身份证号{idcard}，电话{phone}。"),
            report("公司不缴纳社会保险", "咨询", "我在{district}的{company}上班两年多了，公司一直没有给我缴纳社会保险，入职时说转正后就交，到现在也没有交。请问我该怎么维权？需要准备哪些证据？"),
            report("咨询养老金领取", "咨询", "我父亲今年满六十岁，在{district}参加的城乡居民养老保险，请问办理养老金领取需要带哪些材料？可以在网上办吗？他的身份证号是{idcard}。"),
            report("被公司违法辞退", "求助", "{company}以业务调整为由，在没有任何补偿的情况下把我辞退了，我在公司工作了{years}年，劳动合同还没有到期。请问这种情况可以要求多少经济补偿？联系电话{phone}。"),
            report("医保报销进度太慢", "咨询", "今年{months}月在{hospital}住院花了{amount}元，医保报销材料交上去已经三个月了，一直说在审核中，社保窗口也说不清楚进度。请问报销一般需要多长时间？"),
            report("失业保险金迟迟未到账", "咨询", "我今年{months}月从{company}离职，已经在{district}人社窗口提交了失业保险金申请，到现在还没有到账。请问审核需要多久，在哪里可以查询进度？身份证号{idcard}。"),
            report("公司强制加班不付加班费", "举报", "{district}{road}的{company}要求员工每天加班到晚上十点，周末也要上班，但是从来不发加班费，工资条上也没有体现。请劳动监察部门去查一查。"),
            report("公司拒绝申请工伤认定", "求助", "我在{company}上班时被机器压伤了手，住院花了{amount}元，公司不承认是工伤，不给报销，也不给申请工伤认定。请问个人可以自己去申请吗？需要什么材料？"),
            report("社保卡补办时间太长", "咨询", "我的社保卡丢了，去{district}的社保服务大厅补办，工作人员说要等一个月才能拿到新卡，这期间看病不能用医保。请问有没有临时的办法？"),
        ],
        posts: &[
            "干了{months}个月一分钱工资没拿到，老板跑路了，求扩散",
            "公司两年没给我交社保，请问怎么维权",
            "医保报销等了三个月还没到账，效率太低了",
            "被公司无故辞退，一分钱补偿都没有",
        ],
        hashtags: &["#讨薪#", "#社保#"],
    },
    CategoryTexts {
        category: "商贸旅游",
        reports: &[
            report("超市销售过期食品", "投诉", "今天在{district}{road}的{shop}买了一盒牛奶，回家发现已经过期{days}天了，孩子还喝了一口。找超市理论，店员还说是我们自己弄错了。请市场监管部门查处，联系电话{phone}。"),
            report("景区二次收费", "投诉", "国庆期间带家人去{district}的一个景区游玩，门口写的门票{price}元，进去之后每个小景点还要单独收费，观光车也是强制消费。请文旅部门规范景区收费行为。"),
            report("菜市场商贩短斤少两", "举报", "在{district}{community}附近的菜市场买了两斤排骨，回家一称只有一斤六两，再去找摊主，他不承认。这个市场好几个摊位的秤都有问题，请市场监管部门检查一下。"),
            report("健身房办卡后关门跑路", "求助", "{district}{road}的一家健身房，上个月还在推销年卡，我办了{amount}元的卡，这周突然关门了，老板电话打不通，好几百人受害。请问预付卡消费怎么维权？"),
            report("餐馆卫生状况差", "投诉", "在{district}{road}的{restaurant}吃饭，菜里吃出了一只蟑螂，后厨的门开着，能看到地上全是污水。吃完后我和朋友都拉肚子。请食品安全部门去检查一下这家店的卫生状况。"),
            report("导游强制购物", "投诉", "跟团在{district}旅游，导游带我们去了三个购物店，每个店都要停一个多小时，不买东西导游就冷嘲热讽。请旅游主管部门查处这种强制购物行为。"),
            report("药店哄抬药品价格", "举报", "{district}{road}的几家药店，最近把退烧药和口罩的价格涨了两三倍，一盒布洛芬卖到{price}元。这种趁机哄抬物价的行为请市场监管部门尽快查处。"),
            report("咨询夜市摆摊手续", "咨询", "我想在{district}{road}附近的夜市摆个小吃摊，请问需要办理哪些证件？健康证和食品经营许可在哪里办理？摊位是找社区申请还是找城管申请？"),
            report("商家销售翻新电器拒不退货", "投诉", "在{district}{road}的{shop}买了一台电饭煲，回家发现是翻新机，商家拒绝退货，还说特价商品不退不换。请市场监管部门帮忙协调，联系电话{phone}。"),
        ],
        posts: &[
            "在{shop}买到过期牛奶，店员还不承认，大家避雷",
            "景区门票进去还要二次收费，这吃相太难看了",
            "{road}那家{restaurant}吃出蟑螂，吃完拉了一晚上肚子",
            "药店一盒退烧药卖{price}块，这是抢钱吧",
        ],
        hashtags: &["#食品安全#", "#消费维权#", "#长沙旅游#"],
    },
    CategoryTexts {
        category: "卫生计生",
        reports: &[
            report("医院看病排队时间过长", "建议", "今天早上带孩子去{hospital}看病，挂号排了一个小时，看医生又等了两个多小时，整个上午都耗在医院。建议医院增加儿科医生和自助挂号机，优化就诊流程。"),
            report("小区内诊所无证行医", "举报", "{district}{community}里面有一家小诊所，没有挂任何执业许可证，医生也说不清自己的资质，却在给老人打点滴、开抗生素。请卫健部门检查，避免出事。"),
            report("疫苗接种预约不上", "咨询", "想给孩子预约{district}{community}附近社区卫生服务中心的疫苗接种，小程序上一直显示约满，打电话也没人接。请问这个疫苗还有没有，什么时候可以预约？"),
            report("急诊医生态度恶劣", "投诉", "{time}在{hospital}急诊科，孩子发高烧四十度，值班医生一直在玩手机，问了两句就不耐烦，还说我们小题大做。请卫健委调查处理，联系电话{phone}。"),
            report("医院住院费用乱收费", "投诉", "我母亲在{hospital}住院{days}天，费用清单上有很多项目根本没做过，比如一天收了三次护理费，总共花了{amount}元。请问去哪里申请费用核查？身份证号{idcard}。"),
            report("咨询生育登记办理", "咨询", "我们夫妻户口都在{district}，刚怀上二胎，请问生育登记在哪里办理？需要带哪些材料？可以在网上办理吗？办理后产检有没有补贴？"),
            report("社区卫生服务中心缺药", "建议", "{district}{community}附近的社区卫生服务中心经常缺药，降压药和降糖药这些慢性病常用药每次去都说没货，老人只能跑到大医院去开。希望卫健部门协调解决药品供应。"),
            report("医院周边停车难", "建议", "{hospital}的停车场太小了，每天早上门口排满了等着进停车场的车，把{road}都堵死了，救护车都进不去。建议医院扩建停车场或者开放周边车位。"),
            report("急救车到达太慢", "投诉", "{time}家里老人突然晕倒，打了120等了四十多分钟救护车才到，地址就在{district}{community}，离最近的医院不到三公里。请问急救车调度是怎么安排的？"),
        ],
        posts: &[
            "在{hospital}排了三个小时才看上病",
            "疫苗一直约不上，小程序天天显示约满",
            "{hospital}急诊医生态度也太差了吧，孩子烧到四十度还嫌我们烦",
            "社区医院又没有降压药了，老人只能跑大医院",
        ],
        hashtags: &["#看病难#", "#疫苗接种#"],
    },
];

/// A 110 call as the call-taker wrote it down.
#[derive(Clone, Copy)]
pub struct PoliceTemplate {
    /// 警情类别.
    pub jqlb: &'static str,
    /// Ground-truth category: one of the seven, or `generator::PUBLIC_SAFETY`.
    pub category: &'static str,
    pub body: &'static str,
}

const fn police(jqlb: &'static str, category: &'static str, body: &'static str) -> PoliceTemplate {
    PoliceTemplate {
        jqlb,
        category,
        body,
    }
}

pub static POLICE: &[PoliceTemplate] = &[
    police("治安案件", SAFETY, "报警人称在{district}{road}{restaurant}门口有五六个人在打架，其中一人头部流血，双方还在推搡，现场围了很多人，请求民警尽快到场处置。报警人电话{phone}。"),
    police("刑事案件", SAFETY, "报警人称其停放在{community}{n}栋楼下的电动车被盗，车辆为蓝色，价值约{price}元，小区监控拍到一名戴帽子的男子在凌晨把车推走，请求民警调查。"),
    police("交通事故", "交通运输", "报警人称{district}{road}与{road2}交叉口发生两车相撞的交通事故，一辆小轿车侧翻，车内有人受伤，需要救护车和交警到场，现场交通已经堵塞。"),
    police("火灾事故", SAFETY, "报警人称{district}{community}{n}栋{floor}楼一户人家起火，窗户往外冒浓烟，楼道里都是烟，不知道屋里有没有人被困，请求消防和民警立即赶到。"),
    police("群众求助", SAFETY, "报警人称其母亲被困在{community}{n}栋的电梯内已经半个多小时，电梯停在两层之间，物业电话无人接听，老人有心脏病，情绪很紧张，请求救援。"),
    police("刑事案件", SAFETY, "报警人称{district}{road}{shop}门口有一名男子持刀与人争吵，情绪激动，挥舞菜刀威胁路人，周边群众已经散开，请求民警紧急出警。"),
    police("治安案件", SAFETY, "报警人称楼上住户{time}以后一直在大声放音乐、唱歌，噪音很大，多次敲门无人理会，严重影响休息，地址在{district}{community}{n}栋。"),
    police("群众求助", SAFETY, "报警人称其六岁的孩子在{district}{road}的商场附近走失，孩子穿红色外套，身高约一米二，已经找了一个小时没找到，请求民警帮助寻找，联系电话{phone}。"),
    police("刑事案件", SAFETY, "报警人称接到自称公检法人员的电话，说其涉嫌洗钱，要求把钱转到安全账户，已经转了{amount}元，后来发现被骗，请求民警协助止付。报警人身份证号{idcard}。"),
    police("纠纷", SAFETY, "报警人称在{district}{road}与出租车司机因车费发生纠纷，司机锁着车门不让下车，双方发生言语冲突，要求民警到场处理。"),
    police("群众求助", SAFETY, "报警人称{district}{road}旁边的河里有人落水，在水中挣扎，岸上的人够不着，请求消防和救护车马上过来救人。"),
];

/// The words of one kind of incident, sharing its key terms across every wording so the
/// reports of one incident are near-duplicates of each other.
pub struct IncidentTexts {
    pub category: &'static str,
    /// Every text below contains at least one of these.
    pub key_terms: &'static [&'static str],
    pub title: &'static str,
    /// 12345 and WeChat wording.
    pub formal: &'static [&'static str],
    /// Weibo wording.
    pub posts: &'static [&'static str],
    /// 110 wording.
    pub police: &'static [&'static str],
    pub jqlb: &'static str,
    /// Share of the incident's reports on each channel, in `Channel::ALL` order.
    pub channel_weights: [f64; 4],
}

pub static WATER_MAIN: IncidentTexts = IncidentTexts {
    category: "城乡建设",
    key_terms: &["爆管", "停水"],
    title: "{road}爆管停水",
    formal: &[
        "{district}{road}靠近{community}的地方自来水管爆管了，水从路面下冒出来，路上积水很深，{community}整个小区都停水了，请供水公司尽快抢修。",
        "{district}{road}{community}附近爆管，马路变成了小河，车辆无法通行，家里也停水了，请问什么时候能修好恢复供水？",
        "反映{district}{road}供水管道爆管导致大面积停水的问题，{community}及周边几个小区从{time}开始停水，家里老人小孩没水用，希望尽快抢修并安排送水车。",
        "{district}{community}停水了，听说是{road}那边爆管，物业也说不清楚什么时候来水，请相关部门给个准确的恢复供水时间。",
    ],
    posts: &[
        "{road}爆管了！水哗哗地往外冒，{district}这边整片停水",
        "{district}{road}水管爆了，路面全是水，{community}停水中，求快修",
        "又停水了，据说是{road}爆管，{district}的朋友们赶紧存水",
        "刚路过{district}{road}，爆管现场水柱好高，附近都停水了，绕行吧大家",
    ],
    police: &[
        "报警人称{district}{road}路面自来水管爆管，大量积水漫到路上，有车辆被困水中，周边小区停水，请求交警和相关部门到场处置。",
        "报警人称{district}{road}{community}门口水管爆管，水流冲出路面形成深坑，行人通行危险，请求派人维持秩序。",
    ],
    jqlb: "群众求助",
    channel_weights: [0.35, 0.2, 0.4, 0.05],
};

pub static GAS_SMELL: IncidentTexts = IncidentTexts {
    category: "城乡建设",
    key_terms: &["煤气", "燃气"],
    title: "{community}疑似煤气泄漏",
    formal: &[
        "{district}{community}{n}栋楼道里有很浓的煤气味，好像是燃气管道泄漏，已经持续了半个多小时，很多住户都闻到了，非常担心发生爆炸，请燃气公司马上来检查。",
        "{district}{community}附近闻到一股很重的煤气泄漏味，{road}沿街的商铺都闻得到，不知道是哪里漏气，请燃气部门尽快排查。",
        "反映{district}{road}一带煤气味很重，从{time}开始就有，小区里的老人说头晕，担心是燃气管道破了，请有关部门紧急处理。",
        "{district}{community}楼下一直有煤气味，打燃气公司电话没人接，物业说不归他们管，请问应该找谁？很危险！",
    ],
    posts: &[
        "{district}{community}楼道里好大的煤气味，吓得不敢开火",
        "{district}{road}这边一股煤气泄漏的味道，有人知道怎么回事吗？",
        "整条{road}都是煤气味，燃气公司快来看看吧，{district}",
        "{district}的朋友有没有闻到煤气味，{community}这边特别重",
    ],
    police: &[
        "报警人称{district}{community}{n}栋楼道内有浓烈煤气味，疑似燃气泄漏，部分住户已经撤到楼下，请求消防和燃气公司到场。",
        "报警人称{district}{road}沿线闻到强烈煤气味，附近有餐馆在营业，担心起火爆炸，请求民警疏散群众。",
    ],
    jqlb: "群众求助",
    channel_weights: [0.2, 0.15, 0.35, 0.3],
};

pub static ROAD_COLLAPSE: IncidentTexts = IncidentTexts {
    category: "城乡建设",
    key_terms: &["塌陷"],
    title: "{road}路面塌陷",
    formal: &[
        "{district}{road}靠近{community}的路面突然塌陷，出现一个两三米宽的大坑，坑里有积水，周边没有任何围挡，车辆行人经过非常危险，请尽快处理。",
        "反映{district}{road}路面塌陷的问题，塌陷的位置在{community}门口，坑越来越大，旁边的人行道也开裂了，请市政部门马上设置围挡并抢修。",
        "{district}{road}发生路面塌陷，一辆电动车掉进坑里，骑车的人受了伤，现在交通也堵了，希望有关部门查清塌陷原因，是不是地下施工造成的。",
        "{district}{community}门口{road}的塌陷坑已经围起来了，但是一直没有人来修，附近居民出行很不方便，请问什么时候能修复？",
    ],
    posts: &[
        "{district}{road}路面塌陷了！一个大坑，大家路过注意安全",
        "吓死了，{district}{road}突然塌陷，差一点就掉进去了",
        "{road}塌陷的坑越来越大了，{district}这边绕行吧",
        "{district}{community}门口路面塌陷，车都过不去了",
    ],
    police: &[
        "报警人称{district}{road}路面塌陷，形成一个深坑，有一辆小车前轮陷入坑中，司机已下车，请求交警到场处置并封闭道路。",
        "报警人称{district}{road}{community}门口路面塌陷，有行人掉入坑中受伤，请求救护车和民警到场。",
    ],
    jqlb: "群众求助",
    channel_weights: [0.35, 0.15, 0.3, 0.2],
};

pub static FACTORY_SMELL: IncidentTexts = IncidentTexts {
    category: "环境保护",
    key_terms: &["异味", "化工"],
    title: "夜间化工异味扰民",
    formal: &[
        "{district}{road}附近的化工厂每天晚上{time}以后排放刺鼻异味，{community}的居民被熏得睡不着，有人出现头晕、恶心、喉咙痛的症状，请环保部门夜间突击检查。",
        "反映{district}{community}周边夜间化工异味扰民的问题，味道像油漆混着臭鸡蛋，已经持续好几个晚上，白天就没有，怀疑企业偷偷在夜间排放。",
        "{district}{community}这几天晚上一直有很浓的化工异味，门窗关紧了都挡不住，孩子咳嗽不止，请生态环境局查一查{road}那边的化工厂。",
        "请问{district}{road}的化工厂有没有环评手续？每天半夜排放异味，{community}几千户居民深受其害，多次投诉都没有结果。",
    ],
    posts: &[
        "半夜被化工异味熏醒了，{district}{community}这边什么情况",
        "又是这个味道！{road}那边的化工厂是不是又在偷排，{district}的邻居们闻到没有",
        "{district}晚上的异味也太重了，关着窗都能闻到",
        "第三个晚上被异味熏得睡不着了，{district}{community}的人都快疯了",
    ],
    police: &[
        "报警人称{district}{community}附近夜间有强烈的化工异味，多名居民出现头晕恶心，怀疑{road}一带的化工厂违法排放，请求派人查看。",
    ],
    jqlb: "群众求助",
    channel_weights: [0.3, 0.25, 0.45, 0.0],
};

pub static TRAFFIC_ACCIDENT: IncidentTexts = IncidentTexts {
    category: "交通运输",
    key_terms: &["车祸", "相撞", "事故"],
    title: "{road}交通事故",
    formal: &[
        "{district}{road}与{road2}交叉口刚刚发生了一起车祸，两辆车相撞，一辆车翻在路中间，现在路口完全堵死了，请交警尽快疏导交通。",
        "反映{district}{road}的交通事故问题，今天{time}在{community}附近又发生了车祸，这个路口没有红绿灯，车速很快，每个月都出事故，建议加装信号灯和减速带。",
        "{district}{road}车祸现场堵了快一个小时，{bus}路公交车都动不了，希望交警加快事故处理速度。",
    ],
    posts: &[
        "{district}{road}出车祸了，两车相撞，现场好惨，大家绕行",
        "{district}{road}与{road2}交叉口发生事故，堵成停车场了",
        "刚刚在{district}{road}看到车祸，有人被抬上救护车，希望没事",
        "{road}事故还没处理完，{district}这边已经堵了一个小时",
    ],
    police: &[
        "报警人称{district}{road}与{road2}交叉口发生交通事故，一辆货车与小轿车相撞，小轿车内有人被困受伤，请求交警、消防和救护车到场。",
        "报警人称{district}{road}{community}附近一辆电动车与出租车相撞，电动车驾驶人倒地不起，头部出血，请求120和交警到场。",
        "报警人称{district}{road}发生多车追尾事故，有人受伤，车辆漏油，担心起火，请求交警和消防到场处置。",
        "报警人称在{district}{road}被一辆白色小车撞倒后肇事车辆逃逸，车牌号湘A{plate}，报警人腿部受伤，请求民警处理事故。",
    ],
    jqlb: "交通事故",
    channel_weights: [0.3, 0.1, 0.1, 0.5],
};

/// Weibo posts that are not reports: daily life, greetings, ads, lotteries.
pub static WEIBO_CHATTER: &[&str] = &[
    "今天长沙的天气也太好了吧，出门遛娃去",
    "周末去{district}吃了一家超好吃的米粉，强烈推荐",
    "早安，新的一周也要加油鸭",
    "湘江边的夕阳真的绝美，随手一拍都是大片",
    "有没有一起夜跑的，{district}{road}这边，每天晚上八点",
    "转发抽奖，送三张演唱会门票，关注+转发即可参与，下周一开奖",
    "【新店开业】{district}{road}新店全场五折，到店咨询热线{phone}，先到先得",
    "明天又要上班了，不想起床",
    "这部电视剧太好看了，熬夜追完了",
    "臭豆腐配奶茶，这就是长沙的快乐",
    "生日快乐给自己，又老了一岁",
    "考研的姐妹们冲冲冲，还有最后一个月",
    "专业代写各类文案，价格美丽，有需要的私信或者加微信{phone}",
    "{community}的桂花开了，整个小区都是香的",
];

/// WeChat messages to an official account that are not reports.
pub static WECHAT_CHATTER: &[&str] = &[
    "你好",
    "在吗？",
    "谢谢你们的及时处理！",
    "早上好",
    "收到，谢谢",
    "好的",
    "/:handclap/:handclap",
    "123",
    "专业疏通下水道、马桶，价格优惠，二十四小时上门，电话{phone}",
    "代办各类证件，微信同号{phone}",
    "公众号的文章写得很好，点赞",
    "测试",
];

/// What a reposter writes in front of a reposted report.
pub static REPOST_COMMENTS: &[&str] = &[
    "转发微博",
    "同样遇到过",
    "希望有关部门重视",
    "扩散",
    "顶一下，问题还没解决",
    "@长沙12345 请处理一下",
    "太过分了",
    "我们小区也是这样",
];

/// How a caller starts a voice message; speech recognition keeps the filler words.
pub static VOICE_OPENINGS: &[&str] = &[
    "喂你好我想反映一个问题",
    "你好我要投诉一下",
    "你好啊就是那个",
    "我想问一下",
];

pub static ANGRY_EMOTICONS: &[&str] = &[
    "[怒]", "[抓狂]", "[泪]", "[衰]", "[哼]", "[生病]", "[晕]", "[吃惊]",
];
pub static HAPPY_EMOTICONS: &[&str] = &[
    "[哈哈]",
    "[嘻嘻]",
    "[爱你]",
    "[心]",
    "[赞]",
    "[太开心]",
    "[good]",
    "[馋嘴]",
];
/// Topics any citizen might add to a report post.
pub static CITY_HASHTAGS: &[&str] = &["#长沙身边事#", "#长沙#", "#我要曝光#", "#民生关注#"];
/// Accounts a citizen tags to get a reaction (invented).
pub static MENTIONS: &[&str] = &["@长沙12345", "@星城发布", "@长沙民生热线"];
/// A remark quoted with ASCII quotes and ampersands, so Weibo's HTML escaping shows.
pub static QUOTED_REMARKS: &[&str] = &[
    "说好的\"马上处理\"呢？",
    "每次都是\"正在协调\"",
    "物业&社区互相推诿",
];

pub static SCREEN_NAME_HEADS: &[&str] = &[
    "长沙",
    "星城",
    "湘江",
    "麓山",
    "橘子洲",
    "芙蓉",
    "岳麓",
    "雨花",
];
pub static SCREEN_NAME_TAILS: &[&str] = &[
    "小王",
    "吃货",
    "打工人",
    "宝妈",
    "老李",
    "阿杰",
    "的猫",
    "夜跑者",
    "小透明",
    "一只鱼",
];
/// Verified media accounts (invented) whose reposts spread a report far.
pub static MEDIA_ACCOUNTS: &[&str] = &["星城热线", "湘江民生报道", "长沙身边事儿", "麓山晚报"];
pub static USER_LOCATIONS: &[&str] = &[
    "湖南 长沙",
    "湖南 长沙",
    "湖南 长沙",
    "湖南",
    "其他",
    "广东 深圳",
];
pub static WEIBO_SOURCES: &[&str] = &[
    "iPhone客户端",
    "Android",
    "微博 weibo.com",
    "HUAWEI Mate 60",
    "小米14 Ultra",
];

pub static TIMES: &[&str] = &[
    "晚上十点",
    "晚上11点",
    "凌晨1点",
    "凌晨两点",
    "早上6点",
    "中午12点",
    "下午3点",
    "晚上八点半",
];
pub static SHOPS: &[&str] = &[
    "万家福超市",
    "惠邻便利店",
    "鑫盛生鲜超市",
    "旺佳百货",
    "优选&鲜生活超市",
];
pub static RESTAURANTS: &[&str] = &[
    "老街口烧烤",
    "湘味小炒",
    "张记米粉店",
    "辣妹子火锅",
    "刘记夜宵",
];
pub static SCHOOLS: &[&str] = &[
    "枫溪小学",
    "岚山实验中学",
    "星沙育英小学",
    "桂林坡小学",
    "湘江外国语学校",
];
pub static HOSPITALS: &[&str] = &[
    "市第六人民医院",
    "星城中心医院",
    "市妇幼保健院",
    "星城中医医院",
    "市儿童医院",
];
pub static COMPANIES: &[&str] = &[
    "恒达建设工程有限公司",
    "鑫源化工有限公司",
    "华湘物流有限公司",
    "瑞丰电子科技有限公司",
    "长兴建材厂",
    "宏远置业有限公司",
];
pub static PROPERTY_COMPANIES: &[&str] =
    &["金管家物业", "安居物业", "恒信物业服务公司", "湘悦物业"];
pub static HOTLINE_SOURCES: &[&str] = &[
    "电话",
    "电话",
    "电话",
    "网站",
    "微信公众号",
    "手机APP",
    "市长信箱",
];
/// Mobile prefixes of the three carriers.
pub static MOBILE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153",
    "155", "156", "158", "159", "177", "180", "181", "182", "183", "185", "186", "187", "188",
    "189", "199",
];
